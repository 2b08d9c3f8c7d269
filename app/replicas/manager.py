"""The lease manager: one per process, a LoopService.

Every ``poll`` (≤ 1 s) it computes the desired assignment (rendezvous over live replicas), takes
free/expired leases of components it should own and releases the ones it should hand over; every
``renew_interval`` it also heartbeats, renews its leases and marks silent replicas gone.

Two views of ownership, on purpose:

* ``owned(ids)`` — what the scheduler probes: the leases held as of the last successful tick. Probing
  is observation, not action, so it goes on while the database is down (degraded mode), and the
  results it buffers are written later only through ``fence_writes`` (same holder, same epoch).
* ``epoch_for(cid)`` / ``fence(session, cid)`` — what may *act* (healing, notifications): only until
  the local monotonic deadline ``t0 + ttl − margin`` where ``t0`` is taken before the renewing
  transaction starts, so the database's ``expires_at`` (≥ t0 + ttl) comes later. A replica that
  cannot reach the database stops acting before anyone else can take its leases (fencing by time);
  ``fence`` re-checks holder, epoch and expiry in the claim's own transaction (fencing by token).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from app.background import LoopService
from app.db.session import session_scope
from app.replicas import balance, registry
from app.replicas.leases import LeaseLost, lease_store

if TYPE_CHECKING:
    from app.lifespan import GuardState

log = logging.getLogger("pipeline_guard.replicas")

EXTRAS_KEY = "ownership"


class LeaseManager(LoopService):
    name = "replica-leases"
    stop_first = True  # the lifespan stops it before the other loops: leases are handed over at once

    def __init__(self, state: GuardState, *, poll_interval: float | None = None):
        rep = state.settings.replication
        super().__init__(poll_interval or min(1.0, rep.renew_interval), metrics=state.metrics)
        self.state = state
        self.ttl = float(rep.lease_ttl)
        self.renew_interval = float(rep.renew_interval)
        if self.renew_interval >= self.ttl:
            raise ValueError("replication.renew_interval must be shorter than replication.lease_ttl")
        # Covers drift between this process's monotonic clock and the database's over one TTL, and
        # the time a claim takes between its fence and its commit.
        self.margin = min(2.0, 0.2 * self.ttl)
        self.info = registry.make_replica_info(state.settings)
        dialect = state.engine.dialect.name if state.engine is not None else "sqlite"
        self.store = lease_store(dialect)
        # SQLite: one process (the lock file sees to it) owns everything, always.
        self.single = not self.store.multi_replica
        self.epochs: dict[int, int] = {}  # component -> epoch, as of the last successful tick
        self.deadlines: dict[int, float] = {}  # component -> monotonic time until which we may act
        self.desired: set[int] = set()
        self.live: dict[str, str | None] = {}
        self._registered = False
        self._last_renew = -1e18
        self._closing = False
        self.last_tick_ok: float | None = None
        self.epoch_changes = 0

    @property
    def replica_id(self) -> str:
        return self.info.id

    # ------------------------------------------------------------------ the Ownership seam
    async def owned(self, component_ids: set[int]) -> set[int]:
        """Components to probe (monitoring's Ownership protocol)."""
        if self._closing:
            return set()
        if self.single:
            return set(component_ids)
        return {cid for cid in component_ids if cid in self.epochs}

    def epoch_for(self, component_id: int) -> int | None:
        """The epoch to act under, or None when this replica must not act on the component now."""
        if self._closing:
            return None
        if self.single:
            return 1
        epoch = self.epochs.get(component_id)
        if epoch is None or time.monotonic() >= self.deadlines.get(component_id, 0.0):
            return None
        return epoch

    async def fence(self, session: AsyncSession, component_id: int, epoch: int | None = None) -> int:
        """Raise LeaseLost unless this replica may act on the component, checked in the caller's
        transaction (Postgres: the lease row is locked FOR UPDATE until it commits). Returns the epoch."""
        current = self.epoch_for(component_id)
        if current is None or (epoch is not None and epoch != current):
            raise LeaseLost(component_id, epoch if epoch is not None else current)
        await self.store.fence(session, self.replica_id, component_id, current)
        return current

    async def fence_writes(self, session: AsyncSession, component_ids: set[int]) -> set[int]:
        """The subset whose observations this replica may still write (same holder, same epoch)."""
        if self.single:
            return set(component_ids)
        epochs = {cid: self.epochs[cid] for cid in component_ids if cid in self.epochs}
        return await self.store.fence_writes(session, self.replica_id, epochs)

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
                desired = balance.desired_for(self.replica_id, components, live)
            else:
                live = {self.replica_id: self.info.region}
                desired = set(components)
            held = {cid: e for cid, e in self.epochs.items() if cid in components}
            keep = {cid: e for cid, e in held.items() if cid in desired}
            renewed: dict[int, int] = {}
            if renew_due and keep:
                renewed = await store.renew(session, self.replica_id, keep, self.ttl)
                lost = set(keep) - set(renewed)
            taken = await store.take(session, self.replica_id, desired - set(held), self.ttl)
            release = set(held) - desired
            await store.release(session, self.replica_id, release)
            if renew_due and store.multi_replica:
                await registry.expire_dead(session, self.ttl)
        # Committed: only now does memory follow the database.
        self._registered = True
        deadline = t0 + self.ttl - self.margin
        for cid in set(self.epochs) - set(components):
            self._drop(cid)
        for cid in release | lost:
            self._drop(cid)
        if lost:
            log.warning("replica %s lost %d lease(s) it was renewing", self.replica_id, len(lost))
        for cid, epoch in renewed.items():
            self.epochs[cid] = epoch
            self.deadlines[cid] = deadline
        for held_lease in taken:
            self.epochs[held_lease.component_id] = held_lease.epoch
            self.deadlines[held_lease.component_id] = deadline
            if held_lease.changed_hands and store.multi_replica:
                self.epoch_changes += 1
                self.state.metrics.lease_epoch_changes.inc()
        if renew_due:
            self._last_renew = t0
        self.desired, self.live = desired, live
        self.last_tick_ok = time.monotonic()
        self.state.metrics.replica_leases.labels(self.replica_id).set(len(self.epochs))
        if taken or release:
            log.info("replica %s: took %d, released %d, holds %d of %d components (%d live replicas)",
                     self.replica_id, len(taken), len(release), len(self.epochs), len(components), len(live))
            scheduler = self.state.extras.get("scheduler")
            if scheduler is not None and hasattr(scheduler, "refresh"):
                asyncio.get_running_loop().create_task(_quiet_refresh(scheduler))

    def _drop(self, cid: int) -> None:
        self.epochs.pop(cid, None)
        self.deadlines.pop(cid, None)

    async def on_stop(self) -> None:
        await self.release_all()

    async def release_all(self) -> None:
        """Stop acting, hand every lease over at once and mark this replica gone (SIGTERM path)."""
        if self._closing:
            return
        self._closing = True
        self.epochs.clear()
        self.deadlines.clear()
        if not self._registered or self.state.sessionmaker is None:
            return
        try:
            async with asyncio.timeout(3):
                async with session_scope(self.state.sessionmaker) as session:
                    await self.store.release(session, self.replica_id, None)
                    await registry.mark(session, self.replica_id, registry.GONE)
            log.info("replica %s released its leases", self.replica_id)
        except Exception as exc:  # noqa: BLE001 - the leases then expire after their TTL
            log.warning("replica %s could not release its leases (%s); they expire within %.0fs",
                        self.replica_id, type(exc).__name__, self.ttl)
        try:
            self.state.metrics.replica_leases.remove(self.replica_id)
        except KeyError:
            pass


async def _quiet_refresh(scheduler) -> None:
    try:
        await scheduler.refresh()
    except Exception:  # noqa: BLE001 - the scheduler's own loop refreshes again within a second
        pass


def install(state: GuardState) -> LeaseManager:
    """Build the manager once and expose it as the scheduler's Ownership (state.extras["ownership"])."""
    manager = state.extras.get("lease_manager")
    if manager is None:
        manager = LeaseManager(state)
        state.extras["lease_manager"] = manager
        state.extras[EXTRAS_KEY] = manager
    return manager


async def fence(state: GuardState, session: AsyncSession, component_id: int | None) -> None:
    """Fence a side effect on `component_id` inside the claim's transaction. A no-op when no lease
    manager runs (tests that build only some services) or the claim has no component."""
    manager = state.extras.get("lease_manager")
    if manager is None or component_id is None:
        return
    await manager.fence(session, component_id)


__all__ = ["LeaseLost", "LeaseManager", "fence", "install"]
