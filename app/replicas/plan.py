"""What a lease tick renews, takes, releases and forgets, and what keeps a tick over an unchanged
fleet from doing work in proportion to it.

``_gen`` moves whenever the leases held change; ``_settled`` is (components, live replicas, _gen) as
of the end of the last tick, when every lease held was wanted and ``_pending`` were the wanted ones
not held; the desired set is cached per (components, live replicas).
"""

from __future__ import annotations

from dataclasses import dataclass

from app.replicas import balance
from app.replicas.leases import PostgresLeases, SingleReplicaLeases
from app.replicas.registry import ReplicaInfo


@dataclass(frozen=True)
class Plan:
    desired: set[int]  # the components this replica should hold
    keep: dict[int, int] | None  # leases to renew (component -> epoch); None: every lease held
    take: set[int]
    release: set[int]
    gone: set[int]  # leases held on components no longer enabled: forgotten (they expire)


class TickPlanning:
    """Mixed into the lease manager, which keeps this state (see its ``__init__``)."""

    info: ReplicaInfo
    store: PostgresLeases | SingleReplicaLeases
    epochs: dict[int, int]
    _gen: int
    _settled: tuple[dict[int, str | None], dict[str, str | None], int] | None
    _pending: set[int]
    _desired_cache: tuple[dict[int, str | None], dict[str, str | None], set[int]] | None
    _renewal_cache: tuple[int, list[int], list[int]] | None

    def _plan(self, components: dict[int, str | None], live: dict[str, str | None]) -> Plan:
        """What this tick renews, takes, releases and forgets. Work in proportion to the fleet only when
        the component set, the live replicas or the leases held changed since the last tick settled;
        otherwise the last tick's answer stands (every lease held is wanted, the wanted ones not held
        are still to take)."""
        cached = self._desired_cache
        if cached is not None and cached[0] is components and cached[1] == live:
            desired = cached[2]
        else:
            desired = (
                balance.desired_for(self.info.id, components, live)
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
            return Plan(desired, None, set(self._pending), set(), set())
        held = {cid: e for cid, e in self.epochs.items() if cid in components}
        return Plan(
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

    def _settle(self, components: dict[int, str | None], live: dict[str, str | None], plan: Plan) -> set[int]:
        """After a committed tick every lease held is wanted; returns the wanted ones not held (still held
        by another replica), which the next tick tries to take."""
        if self._settled is None or self._settled[2] != self._gen or plan.keep is not None:
            self._pending = plan.desired - set(self.epochs)
        self._settled = (components, dict(live), self._gen)
        return self._pending
