"""Component leases: compare-and-set take/renew/release on the database clock, with fencing epochs.

A lease row says "replica R may act on component C until `expires_at` (database time); its token is
`epoch`". Taking a lease that is free, expired or foreign-but-expired sets the holder and, when the
holder changes, increments the epoch; renewing succeeds only for the same holder *and* epoch. So
``replica_id = me AND epoch = E`` in a later transaction proves nobody else held C in between.

Who waits for whom (Postgres row locks): a result flush fences its writes, and a healing claim its
attempt, with ``FOR KEY SHARE`` on the lease rows; the holder's own renewal and release update only
non-key columns (``FOR NO KEY UPDATE``), so they never wait behind a long flush or a claim, nor a
claim behind them; a take from another holder first locks the expired rows ``FOR UPDATE``, which
waits until every fenced flush or claim on them has committed, so no write or attempt of the old
holder lands after the lease changed hands.

One strategy per dialect: ``PostgresLeases`` (several replicas) and ``SingleReplicaLeases`` (SQLite:
one process owns everything; a second process on the same file is refused by the lock file).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import ScalarSelect, and_, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.components.registry_watch import RegistryWatch
from app.db.models import Component, ComponentLease, Replica


class LeaseLost(Exception):
    """This replica no longer holds the lease (or its local deadline passed): do not act."""

    def __init__(self, component_id: int, epoch: int | None):
        super().__init__(f"lease on component {component_id} (epoch {epoch}) is not held by this replica")
        self.component_id = component_id
        self.epoch = epoch


@dataclass(frozen=True)
class Held:
    component_id: int
    epoch: int
    changed_hands: bool  # the epoch moved to this replica (new row, or taken from another holder)
    # Seconds (database clock) until the check the previous holder had scheduled next; negative when
    # overdue, None when the previous holder did not say (new row, or it died without handing over).
    due_in: float | None = None


_TAKE = text("""
INSERT INTO component_leases AS l (component_id, replica_id, epoch, expires_at, acquired_at)
SELECT c.id, :me, 1, now() + make_interval(secs => CAST(:ttl AS double precision)), now()
FROM components AS c WHERE c.id = ANY(CAST(:ids AS INTEGER[]))
ORDER BY c.id
ON CONFLICT (component_id) DO UPDATE SET
    replica_id = excluded.replica_id,
    epoch = CASE WHEN l.replica_id = excluded.replica_id THEN l.epoch ELSE l.epoch + 1 END,
    expires_at = excluded.expires_at,
    acquired_at = CASE WHEN l.replica_id = excluded.replica_id THEN l.acquired_at ELSE now() END
WHERE l.replica_id = excluded.replica_id OR l.expires_at < now()
RETURNING l.component_id, l.epoch, (l.acquired_at = now()) AS changed,
          CAST(EXTRACT(EPOCH FROM (l.next_check_at - now())) AS double precision) AS due_in
""")

# Renews every lease this replica holds (same holder, same epoch) in one statement and returns only
# the ones it could not renew, so a tick reads back nothing when all is well.
_RENEW = text("""
WITH m AS (
    SELECT * FROM unnest(CAST(:ids AS INTEGER[]), CAST(:epochs AS BIGINT[])) AS m(cid, ep)
), renewed AS (
    UPDATE component_leases AS l
    SET expires_at = now() + make_interval(secs => CAST(:ttl AS double precision))
    FROM m
    WHERE l.component_id = m.cid AND l.replica_id = :me AND l.epoch = m.ep
    RETURNING l.component_id
)
SELECT m.cid FROM m WHERE NOT EXISTS (SELECT 1 FROM renewed AS r WHERE r.component_id = m.cid)
""")

_RELEASE_SOME = text("""
UPDATE component_leases SET expires_at = now() - interval '1 millisecond', next_check_at = NULL
WHERE replica_id = :me AND component_id = ANY(CAST(:ids AS INTEGER[]))
""")

# A hand-over: the lease ends now and says when the component's next check is due (NULL: unknown).
_HAND_OVER = text("""
UPDATE component_leases AS l
SET expires_at = now() - interval '1 millisecond',
    next_check_at = now() + make_interval(secs => m.due_in)
FROM unnest(CAST(:ids AS INTEGER[]), CAST(:due AS DOUBLE PRECISION[])) AS m(cid, due_in)
WHERE l.component_id = m.cid AND l.replica_id = :me
""")

_RELEASE_ALL = text("""
UPDATE component_leases SET expires_at = now() - interval '1 millisecond', next_check_at = NULL
WHERE replica_id = :me AND expires_at > now()
""")

# A healing claim's fence: the same lock as a flush's (FOR KEY SHARE), so a take by another replica
# waits until the claim commits, while the holder's renewal (FOR NO KEY UPDATE, every lease in one
# transaction) and the claim never wait for each other. FOR UPDATE made a reaction's claim wait out a
# whole renewal tick's transaction.
_FENCE = text("""
SELECT epoch FROM component_leases
WHERE component_id = :cid AND replica_id = :me AND epoch = :epoch AND expires_at > now()
FOR KEY SHARE
""")

_FENCE_WRITES = text("""
SELECT component_id, epoch FROM component_leases
WHERE replica_id = :me AND component_id = ANY(CAST(:ids AS INTEGER[]))
ORDER BY component_id
FOR KEY SHARE
""")

# Before a take: the expired leases of other holders among the candidates, locked in key order. FOR
# UPDATE conflicts with a flush's FOR KEY SHARE fence, so the take waits for the old holder's writes
# in flight; a lease renewed meanwhile no longer matches once the wait ends and is left alone.
_LOCK_EXPIRED_FOREIGN = text("""
SELECT component_id FROM component_leases
WHERE component_id = ANY(CAST(:ids AS INTEGER[])) AND replica_id <> :me AND expires_at < now()
ORDER BY component_id
FOR UPDATE
""")


class PostgresLeases:
    multi_replica = True

    def __init__(self) -> None:
        # The regions are re-read only when the registry's cheap change check moved (see RegistryWatch),
        # so a tick over an unchanged fleet reads one aggregate row, not every component.
        self._watch = RegistryWatch()
        self._ids: dict[int, tuple] | None = None
        self._components: dict[int, str | None] = {}

    async def components(self, session: AsyncSession) -> dict[int, str | None]:
        """Enabled component id -> region. The same object is returned while nothing changed, so a
        caller may tell "unchanged" by identity (do not mutate the result)."""
        enabled = await self._watch.enabled_versions(session)
        # The watch re-reads its rows every FULL_REFRESH_S even when nothing moved: the regions are
        # re-read only when an id or a version did (a region is changed by an update, which bumps it).
        if enabled is not self._ids and (self._ids is None or enabled != self._ids):
            rows = await session.execute(
                select(Component.id, Component.region).where(Component.enabled.is_(True))
            )
            fresh = dict(rows.all())  # rows, not the Result: a Result has keys(), the column names
            if fresh != self._components:
                self._components = fresh
        self._ids = enabled
        return self._components

    async def take(self, session: AsyncSession, me: str, ids: set[int], ttl: float) -> list[Held]:
        if not ids:
            return []
        order = sorted(ids)
        await session.execute(_LOCK_EXPIRED_FOREIGN, {"me": me, "ids": order})
        rows = await session.execute(_TAKE, {"me": me, "ttl": ttl, "ids": order})
        return [Held(cid, epoch, bool(changed), due_in) for cid, epoch, changed, due_in in rows]

    async def renew(
        self, session: AsyncSession, me: str, ids: list[int], epochs: list[int], ttl: float
    ) -> set[int]:
        """Renew these leases (`ids[i]` at `epochs[i]`) if still held by `me` at that epoch; returns the
        ones that were not (lost)."""
        if not ids:
            return set()
        rows = await session.execute(_RENEW, {"me": me, "ttl": ttl, "ids": ids, "epochs": epochs})
        return set(rows.scalars())

    async def release(
        self,
        session: AsyncSession,
        me: str,
        ids: set[int] | None = None,
        due_in: dict[int, float | None] | None = None,
    ) -> None:
        """End these leases now (all of them when `ids` is None). `due_in`: component -> seconds until
        its next check is due here, recorded on the database clock for the next holder."""
        if due_in:
            order = sorted(due_in)
            await session.execute(_HAND_OVER, {"me": me, "ids": order, "due": [due_in[c] for c in order]})
            if ids is not None:
                ids = set(ids) - set(due_in)
        if ids is None:
            await session.execute(_RELEASE_ALL, {"me": me})
        elif ids:
            await session.execute(_RELEASE_SOME, {"me": me, "ids": sorted(ids)})

    async def fence(self, session: AsyncSession, me: str, component_id: int, epoch: int) -> None:
        row = (await session.execute(_FENCE, {"cid": component_id, "me": me, "epoch": epoch})).first()
        if row is None:
            raise LeaseLost(component_id, epoch)

    def fence_column(self, me: str, component_id: int, epoch: int) -> ScalarSelect[Any]:
        """`fence` as a column of another statement (a claim's read under its budget lock, one round
        trip for both): the epoch when `me` still holds the lease at `epoch` (the row locked FOR KEY
        SHARE, as `fence` locks it), NULL when not."""
        return (
            select(ComponentLease.epoch)
            .where(
                ComponentLease.component_id == component_id,
                ComponentLease.replica_id == me,
                ComponentLease.epoch == epoch,
                ComponentLease.expires_at > func.now(),
            )
            .with_for_update(read=True, key_share=True)
            .scalar_subquery()
        )

    async def fence_writes(self, session: AsyncSession, me: str, epochs: dict[int, int]) -> set[int]:
        """Of these components, the ones still held by `me` at the same epoch (locked FOR KEY SHARE
        until the transaction ends: no take by another replica can slip in before the caller's writes
        commit, while this replica's own renewal goes on without waiting for them)."""
        if not epochs:
            return set()
        rows = await session.execute(_FENCE_WRITES, {"me": me, "ids": sorted(epochs)})
        return {cid for cid, epoch in rows if epochs.get(cid) == epoch}

    async def owners(self, session: AsyncSession) -> dict[str, list[int]]:
        """Live lease holder -> component ids (unexpired leases only)."""
        rows = await session.execute(
            select(ComponentLease.replica_id, ComponentLease.component_id)
            .where(ComponentLease.expires_at > func.now())
            .order_by(ComponentLease.component_id)
        )
        result: dict[str, list[int]] = {}
        for rid, cid in rows:
            result.setdefault(rid, []).append(cid)
        return result

    async def summary(
        self, session: AsyncSession, replicas: list[Replica], names_limit: int, ttl: float
    ) -> dict[str, tuple[bool, int, list[str]]]:
        """replica id -> (live, leases held, first `names_limit` component names by name)."""
        ids = [r.id for r in replicas]
        if not ids:
            return {}
        live = set(
            (
                await session.execute(
                    select(Replica.id).where(
                        Replica.id.in_(ids),
                        Replica.status == "active",
                        Replica.heartbeat_at > func.now() - timedelta(seconds=ttl),
                    )
                )
            ).scalars()
        )
        valid = and_(ComponentLease.replica_id.in_(ids), ComponentLease.expires_at > func.now())
        counts = dict(
            (
                await session.execute(
                    select(ComponentLease.replica_id, func.count())
                    .where(valid)
                    .group_by(ComponentLease.replica_id)
                )
            ).all()
        )
        ranked = (
            select(
                ComponentLease.replica_id.label("rid"),
                Component.name.label("name"),
                func.row_number()
                .over(partition_by=ComponentLease.replica_id, order_by=Component.name)
                .label("n"),
            )
            .join(Component, Component.id == ComponentLease.component_id)
            .where(valid)
            .subquery()
        )
        names: dict[str, list[str]] = {}
        for rid, name in await session.execute(
            select(ranked.c.rid, ranked.c.name)
            .where(ranked.c.n <= names_limit)
            .order_by(ranked.c.rid, ranked.c.n)
        ):
            names.setdefault(rid, []).append(name)
        return {rid: (rid in live, counts.get(rid, 0), names.get(rid, [])) for rid in ids}


class SingleReplicaLeases:
    """SQLite: one process (guarded by the lock file) owns every component; nothing to coordinate."""

    multi_replica = False

    def __init__(self) -> None:
        # Regions only matter when replicas balance; the ids come from the same cheap change check
        # the scheduler uses, so a tick does not read every component row.
        self._watch = RegistryWatch()
        self._ids: dict[int, tuple] | None = None
        self._components: dict[int, str | None] = {}

    async def components(self, session: AsyncSession) -> dict[int, str | None]:
        enabled = await self._watch.enabled_versions(session)
        if enabled is not self._ids:
            # The same object while the ids are the same, so the manager keeps its assignment.
            if enabled.keys() != self._components.keys() or self._ids is None:
                self._components = dict.fromkeys(enabled)
            self._ids = enabled
        return self._components

    async def take(self, session, me, ids, ttl) -> list[Held]:  # noqa: ARG002  lease store interface
        return [Held(cid, 1, False) for cid in ids]

    async def renew(self, session, me, ids, epochs, ttl) -> set[int]:  # noqa: ARG002  lease store interface
        return set()

    async def release(self, session, me, ids=None, due_in=None) -> None:  # noqa: ARG002  lease store interface
        return None

    async def fence(self, session, me, component_id, epoch) -> None:  # noqa: ARG002  lease store interface
        return None

    def fence_column(self, me, component_id, epoch) -> None:  # noqa: ARG002  lease store interface
        return None  # one process owns everything: nothing to fence

    async def fence_writes(self, session, me, epochs) -> set[int]:  # noqa: ARG002  lease store interface
        return set(epochs)

    async def owners(self, session) -> dict[str, list[int]]:  # noqa: ARG002  lease store interface
        return {}

    async def summary(
        self,
        session: AsyncSession,
        replicas: list[Replica],
        names_limit: int,
        ttl: float,  # noqa: ARG002  lease store interface
    ) -> dict[str, tuple[bool, int, list[str]]]:
        # The lock file guarantees one process: the active replica owns every enabled component.
        enabled = Component.enabled.is_(True)
        count = (
            await session.execute(select(func.count()).select_from(Component).where(enabled))
        ).scalar_one()
        names = list(
            (
                await session.execute(
                    select(Component.name).where(enabled).order_by(Component.name).limit(names_limit)
                )
            ).scalars()
        )
        return {r.id: (True, count, names) if r.status == "active" else (False, 0, []) for r in replicas}


def lease_store(dialect_name: str) -> PostgresLeases | SingleReplicaLeases:
    return PostgresLeases() if dialect_name == "postgresql" else SingleReplicaLeases()
