"""A batch job's rerun holds its verification open (docs/LIFECYCLE.md rule 12).

A heartbeat-checked component is judged on the pings received since its recovery action started
(``app/checks/heartbeat.py``). A rerun that pinged ``start`` since then is running, not failed, until
its allowed runtime is over (the check's ``max_runtime_s``, else its period and grace): a
verification whose deadline comes first waits for it, so no second action starts while the run the
first one started may still end well.

A run's duration is judged only when it measures a run since the action: the ping API derives a
finished run's duration from its ``/start`` when the job reports none, and a ``/start`` from before
an action in flight (a stuck run's, the action killed or left it) says nothing about the rerun the
action started, whose success pings alone (``derived_duration_spans_action``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.checks.base import CheckConfigError
from app.checks.heartbeat import run_deadline
from app.db.models.healing import IN_FLIGHT, HealingAttempt


def rerun_may_run_until(
    check: dict[str, Any] | None,
    action_at: datetime | None,
    last_ping_status: str | None,
    last_start_at: datetime | None,
) -> datetime | None:
    """Until when the run started since the action (``action_at``: its attempt's ``started_at``, a
    guard's clock like the pings') may still end well; None when the component is no batch job or has
    no run in progress that started since the action."""
    if not check or check.get("kind") != "heartbeat" or action_at is None:
        return None
    if last_ping_status != "start" or last_start_at is None or last_start_at < action_at:
        return None
    try:
        return run_deadline(check, last_start_at)
    except CheckConfigError:
        return None  # an invalid stored check: its own check reports it


async def action_started_after(session: AsyncSession, component_id: int, moment: datetime) -> bool:
    """Whether a recovery action of the component started after ``moment`` and is still in flight
    (acting or being verified, its acting marker committed): the same window as the check's
    (``app/monitoring/probes.py``), from the attempt's ``started_at``, a guard's clock like the pings'.
    A finished run's duration counted from a ``/start`` at ``moment`` then spans the action: it is no
    measure of the rerun, and the ping API records none (docs/LIFECYCLE.md rule 12)."""
    q = (
        select(HealingAttempt.id)
        .where(
            HealingAttempt.component_id == component_id,
            HealingAttempt.state.in_(IN_FLIGHT),
            HealingAttempt.acting_at.is_not(None),
            HealingAttempt.started_at > moment,
        )
        .limit(1)
    )
    return (await session.execute(q)).first() is not None
