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

Hand-over without a probing gap: a releasing replica records, per lease, when the component's next
check is due (database clock, ``next_check_at``); the next holder schedules its first check then
(at once when overdue) instead of at a random offset. On SIGTERM the replica first marks itself
``draining`` (the others start polling fast for the leases they want), then hands each lease over
right after its next probe is written (in that flush's transaction) — or at once, with its due time,
when that probe is further away than the others need to notice. A replica that wants leases someone
else still holds polls every ``FAST_POLL_S`` until it has them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.session import session_scope
from app.platform.loops import LoopService
from app.replicas import balance, registry
from app.replicas.leases import LeaseLost, lease_store

if TYPE_CHECKING:
    from app.monitoring.scheduler import Scheduler
    from app.platform.runtime import Core

log = logging.getLogger("pipeline_guard.replicas")

FAST_POLL_S = 0.2  # tick cadence while this replica wants leases another replica still holds
DRAIN_MAX_S = 5.0  # SIGTERM: longest hand-over of leases one by one before releasing the rest at once
HANDOVER_LEAD_S = 0.6  # a check due later than this is handed over at once with its due time


@dataclass(frozen=True)
class _Plan:
    desired: set[int]  # the components this replica should hold
    keep: dict[int, int] | None  # leases to renew (component -> epoch); None: every lease held
    take: set[int]
    release: set[int]
    gone: set[int]  # leases held on components no longer enabled: forgotten (they expire)


class LeaseManager(LoopService):
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
        self._handover_due: dict[int, float] = {}
        self._handed: set[int] = set()
        self._handed_event = asyncio.Event()  # taken component -> monotonic time its first check is due
        self.last_tick_ok: float | None = None
        self.epoch_changes = 0
        # What keeps a tick over an unchanged fleet from doing work in proportion to it: `_gen` moves
        # whenever the leases held change; `_settled` is (components, live replicas, _gen) as of the
        # end of the last tick, when every lease held was wanted and `_pending` were the wanted ones
        # not held; the desired set is cached per (components, live replicas).
        self._gen = 0
        self._renewed_until = 0.0  # monotonic: every lease held is valid until then (see `leases_current`)
        self._settled: tuple[dict[int, str | None], dict[str, str | None], int] | None = None
        self._pending: set[int] = set()
        self._desired_cache: tuple[dict[int, str | None], dict[str, str | None], set[int]] | None = None
        self._renewal_cache: tuple[int, list[int], list[int]] | None = None

    @property
    def replica_id(self) -> str:
        return self.info.id

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

    # ------------------------------------------------------------------ the Ownership seam
    @property
    def generation(self) -> int:
        """Moves whenever what `owned` answers may have changed (a lease taken, lost, released or handed
        over; detached, reattached): the scheduler's refresh skips its diff while it stands still."""
        return self._gen

    def leases_current(self) -> bool:
        """Every lease held is within its local deadline (renewed in time) and this replica is not
        closing: no other replica can hold, nor write the statuses of, a component held here."""
        if self.single:
            return not self._released
        return not self._closing and not self._released and time.monotonic() < self._renewed_until

    async def owned(self, component_ids: set[int]) -> set[int]:
        """Components to probe (monitoring's Ownership protocol). While draining (SIGTERM) the leases
        not yet handed over are still probed."""
        if self._released:
            return set()
        if self.single:
            return set(component_ids)
        return component_ids & self.epochs.keys()

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

    def handover_due(self, component_id: int) -> float | None:
        """Monotonic time the first check of a component just taken over is due (the previous holder's
        schedule), or None (no hand-over information: spread the first check as usual)."""
        return self._handover_due.pop(component_id, None)

    async def hand_over(self, session: AsyncSession, due_in: dict[int, float | None]) -> None:
        """Release these leases in the caller's transaction (the scheduler's flush, right after their
        last result), recording when each component's next check is due. Call `handed_over` after
        the commit."""
        if due_in and not self.single:
            await self.store.release(session, self.replica_id, set(due_in), due_in)

    def handed_over(self, component_ids: set[int]) -> None:
        for cid in component_ids:
            self._drop(cid)
        self._handed.update(component_ids)
        self._handed_event.set()

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

    def _plan(self, components: dict[int, str | None], live: dict[str, str | None]) -> _Plan:
        """What this tick renews, takes, releases and forgets. Work in proportion to the fleet only when
        the component set, the live replicas or the leases held changed since the last tick settled;
        otherwise the last tick's answer stands (every lease held is wanted, the wanted ones not held
        are still to take)."""
        cached = self._desired_cache
        if cached is not None and cached[0] is components and cached[1] == live:
            desired = cached[2]
        else:
            desired = (
                balance.desired_for(self.replica_id, components, live)
                if self.store.multi_replica
                else set(components)
            )
            self._desired_cache = (components, dict(live), desired)
        settled = self._settled
        if (
            settled is not None
            and settled[0] is components
            and settled[1] == live
            and settled[2] == self._gen
        ):
            return _Plan(desired, None, set(self._pending), set(), set())
        held = {cid: e for cid, e in self.epochs.items() if cid in components}
        return _Plan(
            desired,
            {cid: e for cid, e in held.items() if cid in desired},
            desired - set(held),
            set(held) - desired,
            set(self.epochs) - set(held),
        )

    def _renewal(self, keep: dict[int, int] | None) -> tuple[list[int], list[int]]:
        """The ids and epochs to renew (`keep`, or every lease held when None), as the store takes them;
        the lists of every lease held are built once per change of the leases held."""
        if keep is not None:
            ids = sorted(keep)
            return ids, [keep[cid] for cid in ids]
        if self._renewal_cache is None or self._renewal_cache[0] != self._gen:
            ids = sorted(self.epochs)
            self._renewal_cache = (self._gen, ids, [self.epochs[cid] for cid in ids])
        return self._renewal_cache[1], self._renewal_cache[2]

    def _settle(
        self, components: dict[int, str | None], live: dict[str, str | None], plan: _Plan
    ) -> set[int]:
        """After a committed tick every lease held is wanted; returns the wanted ones not held (still held
        by another replica), which the next tick tries to take."""
        if self._settled is None or self._settled[2] != self._gen or plan.keep is not None:
            self._pending = plan.desired - set(self.epochs)
        self._settled = (components, dict(live), self._gen)
        return self._pending

    def _hold(self, cid: int, epoch: int) -> None:
        if self.epochs.get(cid) != epoch:
            self.epochs[cid] = epoch
            self._gen += 1

    def _drop(self, cid: int) -> None:
        if self.epochs.pop(cid, None) is not None:
            self._gen += 1
        self.deadlines.pop(cid, None)

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
        """Stop acting, hand every lease over and mark this replica gone (SIGTERM path). With `drain`
        (and a running scheduler), leases are handed over one by one right after their next probe
        (bounded by DRAIN_MAX_S), so the next holder's first check comes one interval after ours."""
        if self._closing:
            return
        self._closing = True
        if drain and not self.single and self._registered and self.state.sessionmaker is not None:
            try:
                await self._drain()
            except Exception as exc:  # noqa: BLE001 - the rest is released below, or expires
                log.warning(
                    "replica %s: draining its leases failed (%s)", self.replica_id, type(exc).__name__
                )
        stop_probing = getattr(self.scheduler, "stop_probing", None)
        if drain and stop_probing is not None:
            # Probing stops and what ran is written while the leases are still held, before they go.
            await stop_probing()
        remaining = set(self.epochs)
        due_in = self._due_in(remaining)
        self._released = True
        self.epochs.clear()
        self.deadlines.clear()
        self._gen += 1
        if not self._registered or self.state.sessionmaker is None:
            return
        try:
            async with asyncio.timeout(3):
                async with session_scope(self.state.sessionmaker) as session:
                    await self.store.release(session, self.replica_id, None, due_in)
                    await registry.mark(session, self.replica_id, registry.GONE)
            log.info("replica %s released its leases", self.replica_id)
        except Exception as exc:  # noqa: BLE001 - the leases then expire after their TTL
            log.warning(
                "replica %s could not release its leases (%s); they expire within %.0fs",
                self.replica_id,
                type(exc).__name__,
                self.ttl,
            )
        with contextlib.suppress(KeyError):
            self.state.metrics.replica_leases.remove(self.replica_id)

    async def _drain(self) -> None:
        scheduler = self.scheduler
        if scheduler is None or not getattr(scheduler, "dispatching", False) or not self.epochs:
            return
        t0 = time.monotonic()
        # Keep the leases valid while draining and tell the others: they stop counting this replica
        # in their share and poll fast for the leases it is about to hand over.
        async with asyncio.timeout(3):
            async with session_scope(self.state.sessionmaker) as session:
                ids, epochs = self._renewal(None)
                lost = await self.store.renew(session, self.replica_id, ids, epochs, self.ttl)
                await registry.heartbeat(session, self.replica_id, registry.DRAINING)
        for cid in lost:
            self._drop(cid)
        self.deadlines = dict.fromkeys(self.epochs, t0 + self.ttl - self.margin)
        until = min(t0 + DRAIN_MAX_S, t0 + self.ttl - self.margin - 1.0)
        # The others notice on their next tick (one poll); probing goes on meanwhile.
        await asyncio.sleep(min(self.poll_interval + 0.1, max(0.0, until - time.monotonic())))
        due_in = scheduler.due_in(set(self.epochs))
        later = {cid: d for cid, d in due_in.items() if d is None or d > HANDOVER_LEAD_S}
        soon = set(self.epochs) - set(later)
        planned = time.monotonic() - t0
        if later:
            # Their checks stop, the running ones finish, and every result is written while the
            # leases are still held.
            await scheduler.finish_probes(set(later))
            await scheduler.flush()
            async with asyncio.timeout(3):
                async with session_scope(self.state.sessionmaker) as session:
                    await self.store.release(session, self.replica_id, set(later), later)
            self.handed_over(set(later))
            scheduler.forget(set(later))  # the next holder probes them from now on
        if soon:
            scheduler.hand_over_after_probe(soon)  # its flush calls hand_over/handed_over
            while not soon <= self._handed and time.monotonic() < until:
                self._handed_event.clear()
                try:
                    await asyncio.wait_for(
                        self._handed_event.wait(), timeout=max(0.01, until - time.monotonic())
                    )
                except TimeoutError:
                    break
        log.info(
            "replica %s drained in %.2fs: %d lease(s) handed over at once with their due time "
            "(after %.2fs), %d right after their next probe, %d left",
            self.replica_id,
            time.monotonic() - t0,
            len(later),
            planned,
            len(soon & self._handed),
            len(self.epochs),
        )


async def _quiet_refresh(scheduler) -> None:
    try:
        await scheduler.refresh()
    except Exception:  # the scheduler's own loop refreshes again within a second
        log.debug("immediate scheduler refresh failed; its own loop retries", exc_info=True)


__all__ = ["LeaseLost", "LeaseManager"]
