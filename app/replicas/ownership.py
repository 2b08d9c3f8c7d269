"""The lease manager's Ownership seam (monitoring's ``Ownership``/``HandsOver`` protocols, and the
fence healing and notifications act under): what this replica may probe and act on, answered from
the leases the tick (``manager.py``) keeps in memory.

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
import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.replicas.leases import LeaseLost, PostgresLeases, SingleReplicaLeases
from app.replicas.registry import ReplicaInfo


class LeaseOwnership:
    """Mixed into the lease manager, which keeps this state (see its ``__init__``)."""

    info: ReplicaInfo
    store: PostgresLeases | SingleReplicaLeases
    single: bool  # SQLite (or detached): one process owns everything, always
    epochs: dict[int, int]  # component -> epoch, as of the last successful tick
    deadlines: dict[int, float]  # component -> monotonic time until which we may act
    _gen: int
    _renewed_until: float
    _closing: bool
    _released: bool
    _handover_due: dict[int, float]
    _handed: set[int]
    _handed_event: asyncio.Event

    @property
    def replica_id(self) -> str:
        return self.info.id

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
        transaction (Postgres: the lease row is locked FOR KEY SHARE until it commits: a take by another
        replica waits for that commit). Returns the epoch."""
        current = self.epoch_for(component_id)
        if current is None or (epoch is not None and epoch != current):
            raise LeaseLost(component_id, epoch if epoch is not None else current)
        await self.store.fence(session, self.replica_id, component_id, current)
        return current

    def fence_column(self, component_id: int) -> tuple[int, Any]:
        """`fence` folded into the caller's statement: (the epoch to act under, a column whose value is
        that epoch while the lease is held, NULL when not; None when there is nothing to fence: one
        process owns everything). Raises LeaseLost as `fence` does; the caller checks the value read
        and `epoch_for` again before it commits."""
        current = self.epoch_for(component_id)
        if current is None:
            raise LeaseLost(component_id, None)
        return current, self.store.fence_column(self.replica_id, component_id, current)

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

    async def fence_live_writes(
        self, session: AsyncSession, component_ids: set[int]
    ) -> tuple[set[int], bool]:
        """``fence_writes``, and whether the components it returns are known to exist until the caller's
        transaction ends: with leases (Postgres) each comes from its lease row, which goes with its
        component (ON DELETE CASCADE) and stays locked FOR KEY SHARE, so a deletion waits for the
        commit. The result flush then needs no read of its own to drop deleted components."""
        return await self.fence_writes(session, component_ids), not self.single

    # ------------------------------------------------------------------ kept by the tick
    def _hold(self, cid: int, epoch: int) -> None:
        if self.epochs.get(cid) != epoch:
            self.epochs[cid] = epoch
            self._gen += 1

    def _drop(self, cid: int) -> None:
        if self.epochs.pop(cid, None) is not None:
            self._gen += 1
        self.deadlines.pop(cid, None)
