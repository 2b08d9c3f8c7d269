"""A batch job's rerun holds its verification open (docs/LIFECYCLE.md rule 12).

A heartbeat-checked component is judged on the pings received since its recovery action started
(``app/checks/heartbeat.py``). A rerun that pinged ``start`` since then is running, not failed, until
its allowed runtime is over (the check's ``max_runtime_s``, else its period and grace): a
verification whose deadline comes first waits for it, so no second action starts while the run the
first one started may still end well.

A run's duration is judged only when it measures a run since the action: the ping API derives a
finished run's duration from its ``/start`` when the job reports none, and a ``/start`` from before
an action in flight (a stuck run's, the action killed or left it) says nothing about the rerun the
action started, whose success pings alone (``action_started_after``). A job that names its runs
(a ping URL's ``?rid=``) is told apart exactly: a finish of a run that started before the action in
flight is the replaced run's, late; it is stored, but neither fails nor verifies the rerun
(``replaced_run``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
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
    guard's clock like the pings') holds the verification open; None when the component is no batch
    job or no run started since the action. A run still going may end well until its allowed end. A
    run that already finished (``last_ping_status`` its finish) is its checks' to judge: the hold is
    the same, so a verification settled late, after the run ended but before a check read its finish
    (a busy guard stores results late), waits for that check instead of failing a rerun that
    succeeded; the check's verdict (pass or fail) ends the verification long before."""
    if not check or check.get("kind") != "heartbeat" or action_at is None:
        return None
    if last_ping_status is None or last_start_at is None or last_start_at < action_at:
        return None
    try:
        return run_deadline(check, last_start_at)
    except CheckConfigError:
        return None  # an invalid stored check: its own check reports it


def action_in_flight(component_id: int) -> Select[datetime | None, str, datetime | None]:
    """(started_at, state, verify_deadline) of the component's recovery action in flight (acting, or
    being verified, its acting marker committed), latest first: a batch job is judged on its pings
    since that action started (docs/LIFECYCLE.md rule 12). Its start is the attempt's ``started_at``,
    a guard's clock like the pings' (``acting_at`` is the database's)."""
    return (
        select(HealingAttempt.started_at, HealingAttempt.state, HealingAttempt.verify_deadline)
        .where(
            HealingAttempt.component_id == component_id,
            HealingAttempt.state.in_(IN_FLIGHT),
            HealingAttempt.acting_at.is_not(None),
        )
        .order_by(HealingAttempt.started_at.desc())
        .limit(1)
    )


def replaced_run(run_started_at: datetime | None, action_at: datetime | None) -> bool:
    """Whether a run that started at ``run_started_at`` (None: not known) is one the recovery action
    in flight, started at ``action_at`` (None: none in flight), replaced: it started before the action.
    Its finish is the old run's, no verdict on the rerun (docs/LIFECYCLE.md rule 12)."""
    return run_started_at is not None and action_at is not None and action_at > run_started_at


async def action_started_after(session: AsyncSession, component_id: int, moment: datetime | None) -> bool:
    """Whether the component's recovery action in flight (``action_in_flight``: the check's window)
    started after ``moment`` (``replaced_run``). A finished run's duration counted from a ``/start``
    at ``moment`` then spans the action: it is no measure of the rerun, and the ping API records none;
    a finish naming a run (``rid``) that started at ``moment`` is that replaced run's, stored but not
    judged (docs/LIFECYCLE.md rule 12)."""
    if moment is None:
        return False
    action = (await session.execute(action_in_flight(component_id))).first()
    return replaced_run(moment, None if action is None else action[0])
