"""The periodic pass's housekeeping, beside the decisions: approvals that expired, verifications
past their deadline (failed), verifications whose checks stopped (the component disabled or deleted:
``cancelled``, no verdict), breakers whose window ended (re-armed, their alert resolved).

The wake-up path skips it (the periodic pass does it every interval), so an incident handed over
by monitoring is decided without waiting for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import exists, or_, select

from app.db.models.components import Component, ComponentState
from app.db.models.healing import OPEN_STATES, AttemptState, HealingAttempt, HealingBudget, HealingIncident
from app.db.session import session_scope
from app.db.types import utcnow
from app.healing import breaker
from app.healing.reruns import rerun_may_run_until

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.ext.asyncio import AsyncSession

    from app.healing.engine import HealingEngine


async def anything_open(session: AsyncSession) -> bool:
    """Whether the periodic pass has anything to look at: an attempt awaiting approval, running or
    verifying (the reconciler, the expiries, the verdicts, the in-flight gauge), an open breaker (its
    re-arming) or an open incident without an outcome (the decisions). One statement: an idle guard's
    pass costs one round trip instead of three transactions of seven."""
    query = select(
        or_(
            exists().where(HealingAttempt.state.in_(list(OPEN_STATES))),
            exists().where(HealingBudget.breaker_open.is_(True)),
            exists().where(HealingIncident.status == "open", HealingIncident.outcome.is_(None)),
        )
    )
    return bool((await session.execute(query)).scalar_one())


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
        await settle_verifications(engine, session, now)
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


async def settle_verifications(engine: HealingEngine, session: AsyncSession, now: datetime) -> None:
    """Verifying attempts: past their deadline -> failed, unless a batch job's rerun started since the
    action is still within its allowed runtime, running or finished and not yet judged by a check
    (the deadline moves to its end, ``reruns.py``); of a
    component disabled or deleted meanwhile -> cancelled at once, without back-off, breaker or
    statistics (its checks are off: a deadline reached then says nothing about the action). Only the
    rows to settle are read and locked."""
    rows = (
        await session.execute(
            select(
                HealingAttempt,
                Component.enabled,
                Component.check,
                ComponentState.last_ping_status,
                ComponentState.last_start_at,
            )
            .outerjoin(Component, Component.name == HealingAttempt.component)
            .outerjoin(ComponentState, ComponentState.component_id == Component.id)
            .where(
                HealingAttempt.state == AttemptState.VERIFYING,
                or_(HealingAttempt.verify_deadline <= now, Component.enabled.is_not(True)),
            )
            # A row another transaction is settling right now (an incident closing) is left to it.
            .with_for_update(of=HealingAttempt, skip_locked=True)
            .execution_options(populate_existing=True)
        )
    ).all()
    for row, enabled, check, ping_status, start_at in rows:
        if not enabled:
            engine.attempts.finish_cancelled(row, now, "disabled" if enabled is False else "deleted")
        elif (running := _rerun_running_until(row, check, ping_status, start_at)) and now < running:
            # A batch job's rerun started since the action may still end well, or has ended and its
            # checks have not read it yet: no verdict yet.
            row.verify_deadline = running
            row.decision = {**(row.decision or {}), "rerun_started_at": start_at.isoformat()}
        elif row.verify_deadline is not None and row.verify_deadline <= now:
            await engine.attempts.finish_failed(
                session,
                row,
                now,
                AttemptState.FAILED,
                "verification timed out: the component did not pass its checks in time",
            )
    await session.flush()


def _rerun_running_until(
    row: HealingAttempt, check: dict[str, Any] | None, ping_status: str | None, start_at: datetime | None
) -> datetime | None:
    """Until when a batch job's run started since this attempt's action may still end well (None:
    no such run). The action's start is ``started_at`` (a guard's clock, like the pings')."""
    action_at = row.started_at if row.acting_at is not None else None
    return rerun_may_run_until(check, action_at, ping_status, start_at)
