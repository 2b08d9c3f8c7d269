"""Acting on a committed claim, and recording what came of it.

The "acting" marker (with a fresh lease) is committed before the side effect, so the reconciler
can tell an attempt whose action never started (retried) from one that may have run (never re-run
blindly). An automatic decision commits it with its claim (one commit between detection and action;
a claim whose commit raised is settled as never started, ``Attempts.never_started``); an operator's
claim is marked here. The
action runs outside any transaction; its outcome is recorded in another one, retried
while the database is away: ``verifying`` (monitoring is told to give a grace period and re-check
sooner) or ``failed`` (back-off).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import update
from sqlalchemy.engine import CursorResult

from app.db.models.healing import AttemptState, HealingAttempt, HealingIncident
from app.db.session import hold_write_lock, session_scope, write_briefly
from app.db.types import utcnow
from app.healing.leases import LeaseKeeper, database_clock
from app.healing.ports import page_fingerprint
from app.healing.strategies.base import ActionResult, run_bounded

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.healing.attempts import Claim
    from app.healing.engine import HealingEngine

log = logging.getLogger("pipeline_guard.healing")

ACTING_SLACK_S = 5.0  # beyond the action's timeout, before its failures count again whatever happened
# Recording an action's outcome is retried (with back-off up to RECORD_RETRY_MAX_S) for this long while
# the database is away; after that the reconciler settles the attempt once its lease runs out.
RECORD_RETRY_FOR_S = 300.0
RECORD_RETRY_MAX_S = 5.0


async def act(engine: HealingEngine, claim: Claim) -> None:
    strategy = engine.registry.get(claim.entry.kind)
    keeper = LeaseKeeper(engine.state, claim.attempt_id, engine.owner, engine.settings.healing.attempt_lease)
    if not claim.acting_marked and not await mark_acting(engine, claim):
        engine.wake.set()
        return
    if claim.detected_at is not None:
        latency = max(0.0, (utcnow() - claim.detected_at).total_seconds())
        engine.state.metrics.healing_detection_to_action.observe(latency)
        engine.latencies.append(latency)
        del engine.latencies[:-10000]
    keeper.start()
    # The action's own effects (a restart's downtime) must not open an incident or count as failures.
    recovery = engine.ports.recovery
    if hasattr(recovery, "action_starting"):
        recovery.action_starting(
            component_id=claim.component_id,
            until=utcnow() + timedelta(seconds=claim.entry.timeout_s + ACTING_SLACK_S),
        )
    ended = True  # an action that raised is over too
    try:
        started = time.monotonic()
        ctx = dataclasses.replace(claim.ctx, on_process=keeper.process_started)
        result = await run_bounded(strategy, ctx)
        ended = await record_durably(engine, claim, result, time.monotonic() - started)
    finally:
        if ended and hasattr(recovery, "action_ended"):
            recovery.action_ended(component_id=claim.component_id)
        await keeper.stop()
    engine.wake.set()


async def mark_acting(engine: HealingEngine, claim: Claim) -> bool:
    """Commit the "acting" marker (and a fresh lease) before the side effect. False: not ours any
    more, or the database is away — then nothing ran, and the reconciler retries the attempt."""
    try:
        async with session_scope(engine.state.sessionmaker) as session:
            return await mark_acting_in(session, engine, claim)
    except Exception as exc:  # noqa: BLE001
        log.warning(
            "healing: attempt %s not started, its acting marker could not be committed (%s); "
            "it will be retried",
            claim.attempt_id,
            type(exc).__name__,
        )
        return False


async def mark_acting_in(session: AsyncSession, engine: HealingEngine, claim: Claim) -> bool:
    """The "acting" marker, committed in `session` (an operator's claim, before its action starts)."""
    now = database_clock(session)
    done = await session.execute(
        update(HealingAttempt)
        .where(
            HealingAttempt.id == claim.attempt_id,
            HealingAttempt.state == AttemptState.RUNNING,
            HealingAttempt.owner == engine.owner,
        )
        .values(acting_at=now, lease_until=now + timedelta(seconds=engine.settings.healing.attempt_lease))
    )
    if cast("CursorResult[Any]", done).rowcount != 1:  # a DML statement's result is a CursorResult
        await session.rollback()
        return False
    await session.commit()
    return True


async def record_durably(
    engine: HealingEngine, claim: Claim, result: ActionResult, duration_s: float
) -> bool:
    """Record the outcome; while the database is away, try again (the lease is renewed meanwhile).
    Returns whether the hold on the component's failures ends with the action (``record``)."""
    delay = 0.5
    deadline = time.monotonic() + RECORD_RETRY_FOR_S
    while True:
        try:
            return await record(engine, claim, result, duration_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            if time.monotonic() > deadline:
                log.error(
                    "healing: gave up recording the outcome of attempt %s (%s); the reconciler "
                    "settles it when its lease runs out",
                    claim.attempt_id,
                    type(exc).__name__,
                )
                return not result.success
            log.warning(
                "healing: could not record the outcome of attempt %s (%s); retrying in %.1f s",
                claim.attempt_id,
                type(exc).__name__,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECORD_RETRY_MAX_S)


async def record(engine: HealingEngine, claim: Claim, result: ActionResult, duration_s: float) -> bool:
    """Returns whether the hold on the component's failures (``action_starting``) ends now: yes when
    the action failed or its incident closed while it ran (healed already: a failure now is a new
    one, not a blind spot until the action's timeout); no when it is verifying (monitoring's grace
    takes over) or a manual action without an incident (its start-up stays covered)."""
    now = utcnow()
    verifying = None
    async with session_scope(engine.state.sessionmaker) as session:
        # The verdict races monitoring's flush that sees the component healthy while the action ran
        # (it closes the incident and names this attempt as the healer): both take the incident's row
        # (SQLite: the write lock) so one sees what the other committed, never neither.
        await write_briefly(session)
        await hold_write_lock(session)
        row = await session.get(HealingAttempt, claim.attempt_id, with_for_update=True)
        if row is None:
            return not result.success
        row.output = result.output
        row.action_finished_at = now
        if row.state != AttemptState.RUNNING:
            return not result.success  # marked interrupted meanwhile elsewhere: keep that verdict
        decision = dict(row.decision or {})
        decision["action_duration_s"] = round(duration_s, 3)
        if claim.detected_at is not None and row.started_at is not None:
            decision["detection_to_action_ms"] = round(
                (row.started_at - claim.detected_at).total_seconds() * 1000, 1
            )
        row.decision = decision
        if not result.success:
            if getattr(engine.registry.get(row.strategy), "escalates", False):
                await engine.ports.alerts.raise_alert(
                    session,
                    component=row.component,
                    fingerprint=page_fingerprint(row.component, row.incident_key),
                    severity="critical",
                    title="human needed",
                    message=result.detail,
                    incident_id=row.incident_id,
                )
            await engine.attempts.finish_failed(
                session, row, now, AttemptState.FAILED, result.detail, policy=claim.policy
            )
            return True
        row.detail = result.detail
        incident = (
            await session.get(HealingIncident, row.incident_id, with_for_update=True)
            if row.incident_id is not None
            else None
        )
        if incident is None or incident.status == "closed":
            # Nothing to verify against (manual trigger without an incident), or already healthy.
            await engine.attempts.mark_succeeded(session, row, incident, now, policy=claim.policy)
            return incident is not None
        row.state = AttemptState.VERIFYING
        row.verify_deadline = now + timedelta(seconds=claim.policy.verify_timeout)
        verifying = (row.component, row.component_id, row.incident_id, row.strategy, row.id)
    # After the commit: monitoring writes in its own transaction (SQLite has one writer).
    component, component_id, incident_id, kind, attempt_id = verifying
    await engine.ports.recovery.action_ran(
        component=component,
        component_id=component_id,
        incident_id=incident_id,
        action=f"{kind} (healing attempt {attempt_id})",
        grace_s=claim.policy.grace_period,
        recheck_until_s=claim.policy.verify_timeout,
    )
    return False
