"""The healing decision: for each open incident, whether to act, with what, and recording what came of it.

The order of one automatic attempt, each step its own transaction:
1. decide and CLAIM (``deciding.py``): insert a ``running`` attempt row (unique per (incident,
   attempt number), holding a global and a per-group concurrency slot, both unique) with its
   "acting" marker, and commit. A replica that loses the race gets an IntegrityError and does
   nothing. The claim holds a lease (``leases.py``) that the owner renews while the action runs and
   until its outcome is recorded.
2. act (``acting.py``): ``run_bounded(strategy, ctx)`` outside any transaction, right after that
   commit (a command's process group is written on the attempt as soon as it starts); an
   operator's claim commits its marker here first.
3. record: ``verifying`` (monitoring told to give a grace period and re-check sooner) or ``failed``
   (back-off), retried while the database is away. Verification ends with ``IncidentClosed``
   (→ ``succeeded``) or the deadline (→ ``failed``).
What outlives its owner (a guard killed, a task that died, an outcome never recorded) is settled by
the reconciler (``reconcile.py``) on every periodic pass once its lease runs out: retried when the
action never started, ``interrupted`` with back-off otherwise — never blindly repeated.

Reaction: the transaction that opens (or worsens) an incident hands its id over on commit
(``wake.py``); the loop decides that incident at once, without listing the others and without
waiting for the periodic pass's housekeeping (``housekeeping.py``). Decisions take turns one
incident at a time (an operator's claim, a hand-over and the periodic pass interleave between them).

Beside it: ``attempts.py`` (the claim path and the outcomes, shared with the operator's actions),
``operator.py`` (manual trigger, approve, reject, breaker reset), ``incidents.py`` (the incident
events that feed healing and close verifying attempts).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING

from app.db.session import session_scope
from app.db.types import utcnow
from app.healing import acting, housekeeping
from app.healing.attempts import Attempts, Claim
from app.healing.deciding import decide, incident_status, open_incident_ids
from app.healing.housekeeping import anything_open
from app.healing.incidents import IncidentEvents
from app.healing.operator import OperatorActions
from app.healing.ports import HealingPorts
from app.healing.reconcile import Reconciler
from app.healing.strategies.registry import StrategyRegistry
from app.healing.wake import Wake

if TYPE_CHECKING:
    from app.platform.core import Core
    from app.replicas.manager import LeaseManager

log = logging.getLogger("pipeline_guard.healing")


def replica_owner(settings) -> str:
    return f"{settings.replica_id or socket.gethostname()}:{os.getpid()}"


class HealingEngine:
    def __init__(
        self,
        state: Core,
        *,
        registry: StrategyRegistry,
        ports: HealingPorts,
        leases: LeaseManager,
        closed_incidents: set[int],
        tasks: set[asyncio.Task],
    ) -> None:
        self.state = state
        self.settings = state.settings
        self.registry = registry
        self._tasks = tasks  # shared with the recovery notifier's re-check bursts: draining waits for both
        self.ports = ports
        self.owner = replica_owner(self.settings)
        # A status stored before this moment was seen by an earlier run: not acted on until a check
        # has run since (``freshness.py``).
        self.started_at = utcnow()
        self.attempts = Attempts(state, registry, self.ports, self.owner, leases=leases)
        self.wake = Wake()
        self._lock = asyncio.Lock()
        self._urgent = 0  # hand-overs waiting for (or holding) the lock
        self._no_urgent = asyncio.Event()
        self._no_urgent.set()
        self.operator = OperatorActions(
            state, self.attempts, lock=self._lock, spawn=self._spawn, wake=self.wake
        )
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
        if housekeeping:
            async with session_scope(self.state.sessionmaker) as session:
                idle = not await anything_open(session)
            if idle:
                self.state.metrics.healing_in_progress.set(0)  # what the reconciler's count would say
                return []
            await self._housekeeping()
        async with session_scope(self.state.sessionmaker) as session:
            ids = await open_incident_ids(session)
        return await self.decide_each(ids)

    async def react(self, incident_ids: Iterable[int]) -> list[int]:
        """The hand-over: decide these incidents (just opened or worsened) now, and act."""
        if not self.settings.healing.enabled:
            return []
        return await self.decide_each(incident_ids, urgent=True)

    @contextlib.asynccontextmanager
    async def _turn(self, *, urgent: bool = False):
        """The decision lock. A hand-over (urgent) goes before the periodic pass's next step: that
        pass waits until no hand-over is waiting, so a reaction waits for one step at most."""
        if urgent:
            self._urgent += 1
            self._no_urgent.clear()
        else:
            await self._no_urgent.wait()
        try:
            async with self._lock:
                yield
        finally:
            if urgent:
                self._urgent -= 1
                if not self._urgent:
                    self._no_urgent.set()

    async def decide_each(self, incident_ids: Iterable[int], *, urgent: bool = False) -> list[int]:
        started: list[int] = []
        for incident_id in incident_ids:
            try:
                async with self._turn(urgent=urgent):
                    claim = await decide(self, incident_id)
            except Exception:
                log.exception("healing decision for incident %s failed", incident_id)
                continue
            if claim is not None:
                self._spawn(claim)
                started.append(claim.attempt_id)
        return started

    def _spawn(self, claim: Claim) -> None:
        task = asyncio.create_task(acting.act(self, claim), name=f"healing:{claim.attempt_id}")
        self._tasks.add(task)
        self._live[claim.attempt_id] = task
        task.add_done_callback(functools.partial(self._task_done, attempt_id=claim.attempt_id))

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

    async def _housekeeping(self) -> None:
        """Each step takes its turn with the decisions, so a hand-over waits for one step at most."""
        try:
            async with self._turn():
                settled = await self.reconciler.run()
            if settled:
                self.wake.set()
        except Exception:  # the database may be away: the next pass tries again
            log.exception("healing: reconciling attempts failed")
        async with self._turn():
            await housekeeping.sweep(self)

    # -- operator actions (app/healing/operator.py) --------------------------------------------------

    async def trigger(self, component_name: str, *, strategy: str | None, principal: str | None) -> int:
        return await self.operator.trigger(component_name, strategy=strategy, principal=principal)

    async def approve(self, attempt_id: int, principal: str | None) -> None:
        await self.operator.approve(attempt_id, principal)

    async def reject(self, attempt_id: int, principal: str | None) -> None:
        await self.operator.reject(attempt_id, principal)

    async def reset_breaker(self, component: str, principal: str | None) -> bool:
        return await self.operator.reset_breaker(component, principal)


__all__ = ["Claim", "HealingEngine", "incident_status", "replica_owner"]
