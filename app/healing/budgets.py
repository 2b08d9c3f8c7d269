"""Per-component budgets kept in the database (shared by replicas, kept across restarts): back-off
after failed attempts (exponential, capped, like the kubelet) and a cooldown after a success, so a
flapping component gets at most one heal per cooldown."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models.healing import HealingBudget
from app.db.session import hold_write_lock
from app.healing.policy import Policy, backoff_delay


async def load_budget(session: AsyncSession, component: str, *, lock: bool = True) -> HealingBudget:
    """The component's budget row, created on first use; row-locked on Postgres so two replicas
    deciding for the same component take turns (on SQLite the session takes the write lock, so the
    reads that follow and the decision made on them are serialized with every other writer)."""
    stmt = select(HealingBudget).where(HealingBudget.component == component)
    if lock:
        await hold_write_lock(session)  # SQLite: the whole decision under its one write lock
        stmt = stmt.with_for_update()
    budget = (await session.execute(stmt)).scalar_one_or_none()
    if budget is not None:
        return budget
    try:
        async with session.begin_nested():
            budget = HealingBudget(
                component=component, backoff_level=0, failed_incidents=[], breaker_open=False
            )
            session.add(budget)
    except IntegrityError:  # another replica created it first
        budget = (await session.execute(stmt)).scalar_one()
    return budget


def record_failure(budget: HealingBudget, policy: Policy, now: datetime) -> float:
    """A failed (or interrupted) attempt: the next one waits longer. Returns the delay."""
    budget.backoff_level += 1
    delay = backoff_delay(budget.backoff_level, policy.backoff_initial, policy.backoff_max)
    budget.backoff_until = now + timedelta(seconds=delay)
    return delay


def record_success(budget: HealingBudget, policy: Policy, now: datetime) -> None:
    budget.backoff_level = 0
    budget.backoff_until = None
    budget.last_success_at = now
    budget.cooldown_until = now + timedelta(seconds=policy.cooldown) if policy.cooldown > 0 else None


def blocked_reason(budget: HealingBudget, now: datetime) -> str | None:
    if budget.backoff_until is not None and budget.backoff_until > now:
        return f"back-off until {budget.backoff_until.isoformat()}"
    if budget.cooldown_until is not None and budget.cooldown_until > now:
        return f"cooldown after a successful heal until {budget.cooldown_until.isoformat()}"
    return None
