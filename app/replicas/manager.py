"""The lease manager: one per process, a LoopService.

Every ``poll`` (≤ 1 s) it computes the desired assignment (rendezvous over live replicas), takes
free/expired leases of components it should own and releases the ones it should hand over; every
``renew_interval`` it also heartbeats, renews its leases and marks silent replicas gone.

What each tick does is planned in ``plan.py``; what the scheduler, healing and notifications ask of
the leases held (the Ownership seam: probe, act, fence) is answered in ``ownership.py``; the SIGTERM
hand-over is ``handover.py``.

Hand-over without a probing gap: a releasing replica records, per lease, when the component's next
check is due (database clock, ``next_check_at``); the next holder schedules its first check then
(at once when overdue) instead of at a random offset. A replica that wants leases someone else still
holds polls every ``FAST_POLL_S`` until it has them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from app.db.session import session_scope
from app.platform.loops import LoopService
from app.replicas import handover, registry
from app.replicas.handover import DRAIN_MAX_S
from app.replicas.leases import LeaseLost, lease_store
from app.replicas.ownership import LeaseOwnership
from app.replicas.plan import TickPlanning

if TYPE_CHECKING:
    from app.monitoring.scheduler import Scheduler
    from app.platform.core import Core

log = logging.getLogger("pipeline_guard.replicas")

FAST_POLL_S = 0.2  # tick cadence while this replica wants leases another replica still holds


class LeaseManager(LeaseOwnership, TickPlanning, LoopService):
    name = "replica-leases"
    stop_first = True  # the lifespan stops it before the other loops: leases are handed over at once

    def __init__(self, state: Core, *, dialect: str, poll_interval: float | None = None):
        rep = state.settings.replication
        super().__init__(poll_interval or min(1.0, rep.renew_interval), metrics=state.metrics)
        self.poll_interval = self.interval
        self.state = state
        self.ttl = float(rep.lease_ttl)
        self.renew_interval = float(rep.renew_interval)
        if self.renew_interval >= self.ttl:
            raise ValueError("replication.renew_interval must be shorter than replication.lease_ttl")
        # Covers drift between this process's monotonic clock and the database's over one TTL, and
        # the time a claim takes between its fence and its commit.
        self.margin = min(2.0, 0.2 * self.ttl)
        self.info = registry.make_replica_info(state.settings)
        self.dialect = dialect
        self.store = lease_store(dialect)
        # Set by compose once the scheduler exists (it takes this manager as its Ownership).
        self.scheduler: Scheduler | None = None
        self.detached = False
        # SQLite: one process (the lock file sees to it) owns everything, always.
        self.single = not self.store.multi_replica
        self.epochs: dict[int, int] = {}  # component -> epoch, as of the last successful tick
        self.deadlines: dict[int, float] = {}  # component -> monotonic time until which we may act
        self.desired: set[int] = set()
        self.live: dict[str, str | None] = {}
        self._registered = False
        self._last_renew = -1e18
        self._closing = False  # SIGTERM: no more acting, no more taking
        self._released = False  # every lease given up: nothing to probe either
        self._handover_due: dict[int, float] = {}  # taken component -> monotonic time its first check is due
        self._handed: set[int] = set()  # handed over while draining (SIGTERM)
        self._handed_event = asyncio.Event()
        self.last_tick_ok: float | None = None
        self.epoch_changes = 0
        # What keeps a tick over an unchanged fleet from doing work in proportion to it (plan.py).
        self._gen = 0
        self._renewed_until = 0.0  # monotonic: every lease held is valid until then (see `leases_current`)
        self._settled: tuple[dict[int, str | None], dict[str, str | None], int] | None = None
        self._pending: set[int] = set()
        self._desired_cache: tuple[dict[int, str | None], dict[str, str | None], set[int]] | None = None
        self._renewal_cache: tuple[int, list[int], list[int]] | None = None

    def detach(self) -> None:
        """Not started (tests that run only some loops): own every component and fence nothing, as one
        process on SQLite does, instead of owning nothing for want of a tick."""
        self.detached = True
        self.single = True
        self.store = lease_store("sqlite")
        self._gen += 1  # what `owned` answers changed

    def reattach(self) -> None:
        """Undo ``detach``: a test that ticks the manager itself (``run_once``) instead of starting it."""
        self.detached = False
        self.store = lease_store(self.dialect)
        self.single = not self.store.multi_replica
        self._gen += 1

    # ------------------------------------------------------------------ the loop
    async def run_once(self) -> None:
        if self._closing:
            return
        t0 = time.monotonic()
        renew_due = t0 - self._last_renew >= self.renew_interval
        lost: set[int] = set()
        async with session_scope(self.state.sessionmaker) as session:
            store = self.store
            if not self._registered:
                await registry.register(session, self.info)
            elif renew_due and not await registry.heartbeat(session, self.replica_id):
                await registry.register(session, self.info)  # row deleted under us: register again
            components = await store.components(session)
            if store.multi_replica:
                live = await registry.live_replicas(session, self.ttl)
                live[self.replica_id] = self.info.region
            else:
                live = {self.replica_id: self.info.region}
            plan = self._plan(components, live)
            if renew_due and (plan.keep if plan.keep is not None else self.epochs):
                ids, epochs = self._renewal(plan.keep)
                lost = await store.renew(session, self.replica_id, ids, epochs, self.ttl)
            t_take = time.monotonic()
            taken = await store.take(session, self.replica_id, plan.take, self.ttl)
            release = plan.release
            await store.release(session, self.replica_id, release, self._due_in(release))
            if renew_due and store.multi_replica:
                await registry.expire_dead(session, self.ttl)
        # Committed: only now does memory follow the database.
        self._registered = True
        deadline = t0 + self.ttl - self.margin
        for cid in plan.gone | release | lost:
            self._drop(cid)
        if lost:
            log.warning("replica %s lost %d lease(s) it was renewing", self.replica_id, len(lost))
        if renew_due:
            # Every lease still held was renewed by this tick (or is taken below, with this deadline).
            self.deadlines = dict.fromkeys(self.epochs, deadline)
            self._renewed_until = deadline  # the leases taken below (or on later ticks) last longer
        for held_lease in taken:
            cid = held_lease.component_id
            if held_lease.changed_hands and store.multi_replica:
                if held_lease.due_in is not None:
                    self._handover_due[cid] = t_take + held_lease.due_in
                elif held_lease.epoch > 1:
                    # Taken from a holder that stopped without saying when the check was due (kill -9):
                    # it has not been probed for about a lease TTL, so it is overdue.
                    self._handover_due[cid] = t_take
            self._hold(cid, held_lease.epoch)
            self.deadlines[cid] = deadline
            if held_lease.changed_hands and store.multi_replica:
                self.epoch_changes += 1
                self.state.metrics.lease_epoch_changes.inc()
        if self._handover_due:
            for cid in set(self._handover_due) - set(self.epochs):
                self._handover_due.pop(cid, None)
        pending = self._settle(components, live, plan)
        # Wanted but still held by someone else (a replica draining or handing over on a rebalance):
        # poll fast until taken, so a hand-over costs a fraction of a second, not a whole poll.
        self.interval = (
            min(FAST_POLL_S, self.poll_interval) if pending and store.multi_replica else self.poll_interval
        )
        if renew_due:
            self._last_renew = t0
        self.desired, self.live = plan.desired, live
        self.last_tick_ok = time.monotonic()
        self.state.metrics.replica_leases.labels(self.replica_id).set(len(self.epochs))
        if taken or release:
            log.info(
                "replica %s: took %d, released %d, holds %d of %d components (%d live replicas)",
                self.replica_id,
                len(taken),
                len(release),
                len(self.epochs),
                len(components),
                len(live),
            )
            scheduler = self.scheduler
            if scheduler is not None and hasattr(scheduler, "refresh"):
                asyncio.get_running_loop().create_task(_quiet_refresh(scheduler))

    def _due_in(self, ids: set[int]) -> dict[int, float | None]:
        scheduler = self.scheduler
        due_in = getattr(scheduler, "due_in", None)
        if not ids or due_in is None or self.single:
            return {}
        return due_in(ids)

    async def on_stop(self) -> None:
        await self.release_all(drain=True)

    async def stop(self, timeout: float = DRAIN_MAX_S + 15.0) -> None:
        # Long enough for the drain and the scheduler's stop_probing (in-flight checks, the last flush).
        await super().stop(timeout)

    async def release_all(self, *, drain: bool = False) -> None:
        """Stop acting, hand every lease over and mark this replica gone (SIGTERM path; ``handover.py``)."""
        await handover.release_all(self, drain=drain)


async def _quiet_refresh(scheduler) -> None:
    try:
        await scheduler.refresh()
    except Exception:  # the scheduler's own loop refreshes again within a second
        log.debug("immediate scheduler refresh failed; its own loop retries", exc_info=True)


__all__ = ["LeaseLost", "LeaseManager"]
