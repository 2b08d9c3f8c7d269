"""The healing decision: for each open incident, whether to act, with what, and recording what came of it.

The order of one automatic attempt, each step its own transaction:
1. decide and CLAIM: insert a ``running`` attempt row (unique per (incident, attempt number), holding a
   global and a per-group concurrency slot, both unique) and commit. A replica that loses the race
   gets an IntegrityError and does nothing.
2. act: ``run_bounded(strategy, ctx)`` outside any transaction.
   The claim holds a lease (``leases.py``) that the owner renews while the action runs and until
   its outcome is recorded.
2. act: commit the "acting" marker, then ``run_bounded(strategy, ctx)`` outside any transaction
   (a command's process group is written on the attempt as soon as it starts).
3. record: ``verifying`` (monitoring told to give a grace period and re-check sooner) or ``failed``
   (back-off), retried while the database is away. Verification ends with ``IncidentClosed``
   (→ ``succeeded``) or the deadline (→ ``failed``).
What outlives its owner (a guard killed, a task that died, an outcome never recorded) is settled by
the reconciler (``reconcile.py``) on every periodic pass once its lease runs out: retried when the
action never started, ``interrupted`` with back-off otherwise — never blindly repeated.

Beside it: ``attempts.py`` (the claim path and the outcomes, shared with the operator's actions),
``operator.py`` (manual trigger, approve, reject, breaker reset), ``incidents.py`` (the incident
events that feed healing and close verifying attempts).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, select, update

from app.db.models.healing import (
    OPEN_STATES,
    AttemptState,
    HealingAttempt,
    HealingBudget,
    HealingIncident,
    HealingStrategyStat,
)
from app.db.session import session_scope
from app.db.types import utcnow
from app.healing import breaker, budgets, learning, lifecycle
from app.healing.attempts import Attempts, Claim, find_component
from app.healing.incidents import IncidentEvents
from app.healing.leases import LeaseKeeper, database_now
from app.healing.operator import OperatorActions
from app.healing.policy import Policy, StrategyEntry, allowed_entries, parse_policy
from app.healing.ports import HealingPorts
from app.healing.reconcile import Reconciler
from app.healing.rootcause import holds_healing
from app.healing.strategies.base import ActionResult, run_bounded
from app.healing.strategies.registry import StrategyRegistry

if TYPE_CHECKING:
    from app.platform.runtime import Core
    from app.replicas.manager import LeaseManager

log = logging.getLogger("pipeline_guard.healing")

ACTING_SLACK_S = 5.0  # beyond the action's timeout, before its failures count again whatever happened
# Recording an action's outcome is retried (with back-off up to RECORD_RETRY_MAX_S) for this long while
# the database is away; after that the reconciler settles the attempt once its lease runs out.
RECORD_RETRY_FOR_S = 300.0
RECORD_RETRY_MAX_S = 5.0


def replica_owner(settings) -> str:
    return f"{settings.replica_id or socket.gethostname()}:{os.getpid()}"


class HealingEngine:
    def __init__(self, state: Core, *, registry: StrategyRegistry, ports: HealingPorts, leases: LeaseManager,
                 closed_incidents: set[int], tasks: set[asyncio.Task]) -> None:
        self.state = state
        self.settings = state.settings
        self.registry = registry
        self._tasks = tasks  # shared with the recovery notifier's re-check bursts: draining waits for both
        self.ports = ports
        self.owner = replica_owner(self.settings)
        self.attempts = Attempts(state, registry, self.ports, self.owner, leases=leases)
        self.wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self.operator = OperatorActions(state, self.attempts, lock=self._lock, spawn=self._spawn, wake=self.wake)
        self.incidents = IncidentEvents(state, self.attempts, self.wake, closed_incidents)
        self._live: dict[int, asyncio.Task] = {}  # attempt id -> the task that acts and records it
        self.reconciler = Reconciler(state, self.attempts, self._live)
        # Latest action start latencies (seconds from detection), for the bench and status.
        self.latencies: list[float] = []

    # -- the loop's entry points ---------------------------------------------------------------------

    async def recover_interrupted(self) -> int:
        """Settle what a dead owner left in flight (the reconciler, also run on every periodic pass)."""
        count = await self.reconciler.run()
        if count:
            self.wake.set()
        return count

    async def evaluate(self, *, housekeeping: bool = True) -> list[int]:
        """One pass over open incidents. Returns the ids of attempts started. The wake-up path skips
        housekeeping (deadlines, expiries, re-arming: the periodic pass does them) to keep
        detection-to-action short."""
        if not self.settings.healing.enabled:
            return []
        started: list[int] = []
        async with self._lock:
            if housekeeping:
                await self._housekeeping()
            async with session_scope(self.state.sessionmaker) as session:
                incidents = (await session.execute(
                    select(HealingIncident).where(HealingIncident.status == "open", HealingIncident.outcome.is_(None))
                    .order_by(HealingIncident.opened_at)
                )).scalars().all()
                ids = [i.incident_id for i in incidents]
            for incident_id in ids:
                try:
                    claim = await self._decide(incident_id)
                except Exception:
                    log.exception("healing decision for incident %s failed", incident_id)
                    continue
                if claim is not None:
                    self._spawn(claim)
                    started.append(claim.attempt_id)
        return started

    def _spawn(self, claim: Claim) -> None:
        task = asyncio.create_task(self._act(claim), name=f"healing:{claim.attempt_id}")
        self._tasks.add(task)
        self._live[claim.attempt_id] = task
        task.add_done_callback(lambda t, attempt_id=claim.attempt_id: self._task_done(t, attempt_id))

    def _task_done(self, task: asyncio.Task, attempt_id: int | None = None) -> None:
        self._tasks.discard(task)
        if attempt_id is not None and self._live.get(attempt_id) is task:
            del self._live[attempt_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("healing action task %s failed", task.get_name(), exc_info=task.exception())

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for running actions (tests, shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- housekeeping -------------------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        try:
            if await self.reconciler.run():
                self.wake.set()
        except Exception:  # the database may be away: the next pass tries again
            log.exception("healing: reconciling attempts failed")
        now = utcnow()
        async with session_scope(self.state.sessionmaker) as session:
            expired = (await session.execute(select(HealingAttempt).where(
                HealingAttempt.state == AttemptState.PENDING_APPROVAL, HealingAttempt.approval_deadline <= now,
            ))).scalars().all()
            for row in expired:
                row.state = AttemptState.EXPIRED
                row.detail = "approval not given in time"
                row.finished_at = now
                self.attempts.count(row, "expired")
            overdue = (await session.execute(select(HealingAttempt).where(
                HealingAttempt.state == AttemptState.VERIFYING, HealingAttempt.verify_deadline <= now,
            ))).scalars().all()
            for row in overdue:
                await self.attempts.finish_failed(
                    session, row, now, AttemptState.FAILED,
                    "verification timed out: the component did not pass its checks in time")
            rearm = (await session.execute(select(HealingBudget).where(
                HealingBudget.breaker_open.is_(True), HealingBudget.breaker_rearm_at <= now,
            ))).scalars().all()
            for budget in rearm:
                breaker.rearm(budget)
                self.state.metrics.circuit_open.labels(budget.component).set(0)
                await self.ports.alerts.resolve(session, fingerprint=f"healing-breaker:{budget.component}",
                                                component=budget.component,
                                                resolution_action="healing breaker re-armed after its window")

    # -- deciding -----------------------------------------------------------------------------------

    async def _decide(self, incident_id: int) -> Claim | None:
        now = utcnow()
        async with session_scope(self.state.sessionmaker) as session:
            incident = await session.get(HealingIncident, incident_id)
            if incident is None or incident.status != "open" or incident.outcome is not None:
                return None
            component = await find_component(session, incident.component)
            if component is None or not component.enabled or not component.recovery:
                return None
            if not self.attempts.may_act(component.id):
                return None  # another replica holds this component's lease: it decides
            if await holds_healing(session, incident_id, component):
                return None  # attributed to an unhealthy upstream (or held): the root is healed, not this
            policy = parse_policy(component.recovery, self.settings)
            status = await incident_status(session, incident_id, component.id)
            if not lifecycle.should_heal(status, policy.heal_on):
                return None  # e.g. degraded without `degraded` in heal_on: decided again if it worsens
            attempts = (await session.execute(
                select(HealingAttempt).where(HealingAttempt.incident_key == f"i:{incident_id}")
                .order_by(HealingAttempt.attempt_number)
            )).scalars().all()
            if any(a.state in OPEN_STATES for a in attempts):
                return None
            # An attempt interrupted before its action started did nothing: it is retried, and does
            # not count against max_attempts.
            acted = [a for a in attempts if not (a.state == AttemptState.INTERRUPTED and a.acting_at is None)]
            labels = dict(component.labels or {})
            if await self.ports.silences.is_silenced(session, component.name, labels):
                return None
            budget = await budgets.load_budget(session, component.name)
            if budget.breaker_open:
                return None
            entries = allowed_entries(policy, self.settings, self.registry)
            if not entries or len(acted) >= policy.max_attempts:
                await self._exhaust(session, incident, component.name, policy, budget, now, acted)
                return None
            if budgets.blocked_reason(budget, now):
                return None
            entry, decision = await self._choose(session, component.name, policy, entries, acted)
            return await self.attempts.claim(session, incident=incident, component=component, policy=policy,
                                             entry=entry, decision=decision, number=len(attempts) + 1,
                                             trigger="auto", now=now)

    async def _choose(self, session, component: str, policy: Policy, entries: list[StrategyEntry],
                      attempts) -> tuple[StrategyEntry, dict[str, Any]]:
        number = len(attempts) + 1
        if not policy.learned_ordering or len(entries) == 1:
            entry = entries[(number - 1) % len(entries)]
            return entry, {"mode": "ordered", "chosen": entry.key,
                           "explanation": f"attempt {number}: strategy {entry.index + 1} of the admin's ordered list"}
        tried = {a.strategy_index for a in attempts}
        fresh = [e for e in entries if e.index not in tried] or entries
        rows = (await session.execute(select(HealingStrategyStat).where(HealingStrategyStat.component == component))).scalars().all()
        stats = {r.strategy_key: (r.successes, r.failures, r.total_recover_s) for r in rows}
        entry, why = learning.choose(fresh, stats, method=self.settings.healing.learning)
        return entry, why

    async def _exhaust(self, session, incident: HealingIncident, component: str, policy: Policy,
                       budget: HealingBudget, now: datetime, attempts) -> None:
        incident.outcome = "exhausted"
        await self.ports.alerts.raise_alert(
            session, component=component, fingerprint=f"healing-exhausted:{component}:{incident.incident_id}",
            severity="critical", title="healing exhausted: human needed",
            message=f"{len(attempts)} healing attempt(s) did not recover {component}; a human is needed",
            incident_id=incident.incident_id, labels=incident.labels,
        )
        if breaker.record_failed_incident(budget, policy, now):
            self.state.metrics.circuit_open.labels(component).set(1)
            await self.ports.alerts.raise_alert(
                session, component=component, fingerprint=f"healing-breaker:{component}", severity="critical",
                title="healing exhausted: human needed",
                message=(f"healing circuit breaker open for {component}: {len(budget.failed_incidents)} incidents "
                         f"not healed within {policy.breaker_window:g} s; automatic healing stopped until "
                         f"{budget.breaker_rearm_at.isoformat()} or an operator re-arms it"),
                incident_id=incident.incident_id, labels=incident.labels,
            )
        await session.flush()

    # -- acting and recording -----------------------------------------------------------------------

    async def _act(self, claim: Claim) -> None:
        strategy = self.registry.get(claim.entry.kind)
        metrics = self.state.metrics
        keeper = LeaseKeeper(self.state, claim.attempt_id, self.owner, self.settings.healing.attempt_lease)
        if not await self._mark_acting(claim, keeper):
            self.wake.set()
            return
        if claim.detected_at is not None:
            latency = max(0.0, (utcnow() - claim.detected_at).total_seconds())
            metrics.healing_detection_to_action.observe(latency)
            self.latencies.append(latency)
            del self.latencies[:-10000]
        keeper.start()
        # The action's own effects (a restart's downtime) must not open an incident or count as failures.
        recovery = self.ports.recovery
        if hasattr(recovery, "action_starting"):
            recovery.action_starting(component_id=claim.component_id,
                                     until=utcnow() + timedelta(seconds=claim.entry.timeout_s + ACTING_SLACK_S))
        result = None
        try:
            started = time.monotonic()
            ctx = dataclasses.replace(claim.ctx, on_process=keeper.process_started)
            result = await run_bounded(strategy, ctx)
            await self._record_durably(claim, result, time.monotonic() - started)
        finally:
            if (result is None or not result.success) and hasattr(recovery, "action_failed"):
                recovery.action_failed(component_id=claim.component_id)
            await keeper.stop()
        self.wake.set()

    async def _mark_acting(self, claim: Claim, keeper: LeaseKeeper) -> bool:
        """Commit the "acting" marker (and a fresh lease) before the side effect. False: not ours any
        more, or the database is away — then nothing ran, and the reconciler retries the attempt."""
        try:
            async with session_scope(self.state.sessionmaker) as session:
                now = await database_now(session)
                done = await session.execute(
                    update(HealingAttempt).where(HealingAttempt.id == claim.attempt_id,
                                                 HealingAttempt.state == AttemptState.RUNNING,
                                                 HealingAttempt.owner == self.owner)
                    .values(acting_at=now, lease_until=now + timedelta(seconds=keeper.lease_s)))
                if done.rowcount != 1:
                    return False
        except Exception as exc:  # noqa: BLE001
            log.warning("healing: attempt %s not started, its acting marker could not be committed (%s); "
                        "it will be retried", claim.attempt_id, type(exc).__name__)
            return False
        return True

    async def _record_durably(self, claim: Claim, result: ActionResult, duration_s: float) -> None:
        """Record the outcome; while the database is away, try again (the lease is renewed meanwhile)."""
        delay = 0.5
        deadline = time.monotonic() + RECORD_RETRY_FOR_S
        while True:
            try:
                await self._record(claim, result, duration_s)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                if time.monotonic() > deadline:
                    log.error("healing: gave up recording the outcome of attempt %s (%s); the reconciler "
                              "settles it when its lease runs out", claim.attempt_id, type(exc).__name__)
                    return
                log.warning("healing: could not record the outcome of attempt %s (%s); retrying in %.1f s",
                            claim.attempt_id, type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECORD_RETRY_MAX_S)

    async def _record(self, claim: Claim, result: ActionResult, duration_s: float) -> None:
        now = utcnow()
        verifying = None
        async with session_scope(self.state.sessionmaker) as session:
            row = await session.get(HealingAttempt, claim.attempt_id, with_for_update=True)
            if row is None:
                return
            row.output = result.output
            row.action_finished_at = now
            if row.state != AttemptState.RUNNING:
                return  # marked interrupted meanwhile by a restart elsewhere: keep that verdict
            decision = dict(row.decision or {})
            decision["action_duration_s"] = round(duration_s, 3)
            if claim.detected_at is not None and row.started_at is not None:
                decision["detection_to_action_ms"] = round((row.started_at - claim.detected_at).total_seconds() * 1000, 1)
            row.decision = decision
            if not result.success:
                if getattr(self.registry.get(row.strategy), "escalates", False):
                    await self.ports.alerts.raise_alert(
                        session, component=row.component, fingerprint=f"healing-notify:{row.component}:{row.incident_key}",
                        severity="critical", title="human needed", message=result.detail,
                        incident_id=row.incident_id,
                    )
                await self.attempts.finish_failed(session, row, now, AttemptState.FAILED, result.detail,
                                                  policy=claim.policy)
                return
            row.detail = result.detail
            incident = await session.get(HealingIncident, row.incident_id) if row.incident_id is not None else None
            if incident is None or incident.status == "closed":
                # Nothing to verify against (manual trigger without an incident), or already healthy.
                await self.attempts.mark_succeeded(session, row, incident, now, policy=claim.policy)
                return
            row.state = AttemptState.VERIFYING
            row.verify_deadline = now + timedelta(seconds=claim.policy.verify_timeout)
            verifying = (row.component, row.component_id, row.incident_id, row.strategy, row.id)
        # After the commit: monitoring writes in its own transaction (SQLite has one writer).
        component, component_id, incident_id, kind, attempt_id = verifying
        await self.ports.recovery.action_ran(
            component=component, component_id=component_id, incident_id=incident_id,
            action=f"{kind} (healing attempt {attempt_id})", grace_s=claim.policy.grace_period,
            recheck_until_s=claim.policy.verify_timeout,
        )

    # -- operator actions (app/healing/operator.py) --------------------------------------------------

    async def trigger(self, component_name: str, *, strategy: str | None, principal: str | None) -> int:
        return await self.operator.trigger(component_name, strategy=strategy, principal=principal)

    async def approve(self, attempt_id: int, principal: str | None) -> None:
        await self.operator.approve(attempt_id, principal)

    async def reject(self, attempt_id: int, principal: str | None) -> None:
        await self.operator.reject(attempt_id, principal)

    async def reset_breaker(self, component: str, principal: str | None) -> bool:
        return await self.operator.reset_breaker(component, principal)


async def incident_status(session, incident_id: int, component_id: int) -> str:
    """The status an incident's heal is decided on: the component's own while the incident is its
    current one (so a component that improved to degraded is not restarted for having been critical),
    else the incident's worst (external incidents, from Alertmanager, leave the checks' status alone)."""
    from app.db.models import ComponentState, Incident

    state = await session.get(ComponentState, component_id)
    incident = await session.get(Incident, incident_id)
    if state is not None and state.current_incident_id == incident_id and state.status in lifecycle.INCIDENT_STATUSES:
        return state.status
    if incident is None:
        return "critical"  # only healing's own record of it: the opening event carried no more
    return incident.worst_status or incident.opening_status or "critical"


__all__ = ["Claim", "HealingEngine", "and_", "replica_owner"]
