"""The periodic pass's housekeeping, beside the decisions: approvals that expired, verifications
past their deadline (failed), breakers whose window ended (re-armed, their alert resolved).

The wake-up path skips it (the periodic pass does it every interval), so an incident handed over
by monitoring is decided without waiting for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from app.db.models.healing import AttemptState, HealingAttempt, HealingBudget
from app.db.session import session_scope
from app.db.types import utcnow
from app.healing import breaker

if TYPE_CHECKING:
    from app.healing.engine import HealingEngine


async def sweep(engine: HealingEngine) -> None:
    attempts = engine.attempts
    now = utcnow()
    async with session_scope(engine.state.sessionmaker) as session:
        expired = (
            (
                await session.execute(
                    select(HealingAttempt).where(
                        HealingAttempt.state == AttemptState.PENDING_APPROVAL,
                        HealingAttempt.approval_deadline <= now,
                    )
                )
            )
            .scalars()
            .all()
        )
        for row in expired:
            row.state = AttemptState.EXPIRED
            row.detail = "approval not given in time"
            row.finished_at = now
            attempts.count(row, "expired")
        overdue = (
            (
                await session.execute(
                    select(HealingAttempt).where(
                        HealingAttempt.state == AttemptState.VERIFYING,
                        HealingAttempt.verify_deadline <= now,
                    )
                )
            )
            .scalars()
            .all()
        )
        for row in overdue:
            await attempts.finish_failed(
                session,
                row,
                now,
                AttemptState.FAILED,
                "verification timed out: the component did not pass its checks in time",
            )
        rearm = (
            (
                await session.execute(
                    select(HealingBudget).where(
                        HealingBudget.breaker_open.is_(True),
                        HealingBudget.breaker_rearm_at <= now,
                    )
                )
            )
            .scalars()
            .all()
        )
        for budget in rearm:
            breaker.rearm(budget)
            engine.state.metrics.circuit_open.labels(budget.component).set(0)
            await engine.ports.alerts.resolve(
                session,
                fingerprint=f"healing-breaker:{budget.component}",
                component=budget.component,
                resolution_action="healing breaker re-armed after its window",
            )
