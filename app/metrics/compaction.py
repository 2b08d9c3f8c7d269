"""Rollup compaction, in bulk.

Ingest appends one *delta* row per (series, bucket) per batch (``compacted = false``); readers merge
whatever rows a bucket has, so compaction is only about keeping that number small. A round:

1. claims up to ``batch`` pending deltas through the partial index on ``NOT compacted`` (oldest
   first; ``FOR UPDATE SKIP LOCKED`` on Postgres, so replicas take disjoint sets and never wait on
   each other or on ingest);
2. locks the already-compacted rows of the same buckets, in key order (no deadlocks between replicas;
   on Postgres one statement given the deltas' ids);
3. merges each bucket's rows into one compacted row (sketches merged bucket by bucket, exact
   statistics folded), deletes the rows it merged and writes the merged ones through the dialect's
   bulk insert; a bucket with a single new delta and nothing compacted is just flagged.

That is a handful of statements per round whatever the number of buckets. The previous design (a
``GROUP BY ... HAVING count(*) > 1`` over the whole rollup table, then one transaction per bucket)
cost ~29 us of app CPU per ingested point on Postgres (~90 on SQLite): several times the ingest
itself, so sustained ingest could never be compacted.

If two replicas merge into the same bucket at the same moment, the second may not see the first's
new row and leaves a second compacted row for that bucket: readers merge it, nothing is counted twice.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, select

from app.db.models import MetricRollup
from app.db.session import session_scope
from app.metrics.ingest_pg import ingest_for
from app.metrics.rollups import ROLLUP_KEY, encode_sketch, merge_blobs
from app.platform.loops import LoopService

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.platform.runtime import Core


class RollupCompactor(LoopService):
    name = "rollup-compactor"

    def __init__(self, state: Core, interval: float = 15.0, batch: int = 5000, max_rounds: int = 40):
        super().__init__(interval, metrics=state.metrics)
        self.state = state
        self.batch = batch
        self.max_rounds = max_rounds
        self.compacted = 0

    async def run_once(self) -> int:
        """Compact until nothing is pending (or ``max_rounds``); returns the deltas merged."""
        done = 0
        for _ in range(self.max_rounds):
            try:
                async with session_scope(self.state.sessionmaker) as session:
                    n = await compact_round(session, self.batch)
            except CompactionRaced:
                break  # another compactor got there first: rolled back, the next run retries
            done += n
            if n < self.batch:
                break
        self.compacted += done
        return done


class CompactionRaced(Exception):
    """Rows this round meant to merge were gone when it deleted them: it rolls back whole.
    Only possible without row locks (two compactors on SQLite); Postgres locks the rows it reads."""


def _key(row: Any) -> tuple:
    return tuple(row[1:6])  # resolution, component, metric_name, series_key, bucket_start


async def compact_round(session: AsyncSession, batch: int) -> int:
    """One bulk round in the caller's transaction; returns the number of deltas claimed.

    Rows are (id, resolution, component, metric_name, series_key, bucket_start, sketch) by position;
    the bulk reads and writes by key or id go through the dialect's ingest seam (on Postgres one
    statement each, given an array of ids, where ``IN`` lists of row values cost the database more
    than the rest of the round)."""
    t = cast(Table, MetricRollup.__table__)  # a declarative __table__ is typed FromClause
    r = t.c
    keys = [r[name] for name in ROLLUP_KEY]
    deltas = (
        await session.execute(
            select(r.id, *keys, r.sketch)
            .where(r.compacted.is_(False))
            .order_by(r.id)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
    ).all()
    if not deltas:
        return 0
    groups: defaultdict[tuple, list] = defaultdict(list)
    for row in deltas:
        groups[_key(row)].append(row)
    ingest = ingest_for(session.get_bind().dialect.name)
    for row in await ingest.compacted_rollups(session, deltas):
        groups[_key(row)].append(row)

    flag: list[int] = []
    gone: list[int] = []
    merged: list[tuple] = []
    for key, rows in groups.items():
        if len(rows) == 1:
            flag.append(rows[0][0])
            continue
        gone.extend(row[0] for row in rows)
        sk = merge_blobs([bytes(row[6]) for row in rows])
        merged.append((*key, sk.count, sk.sum, sk.min, sk.max, sk.sum_of_squares, encode_sketch(sk), True))
    await ingest.flag_rollups_compacted(session, flag)
    removed = await ingest.delete_rollups(session, gone)
    if removed != len(gone):  # refuse rather than count a bucket twice
        raise CompactionRaced(f"rollup compaction removed {removed} of {len(gone)} rows")
    if merged:
        await ingest.insert_rollups(session, merged)
    return len(deltas)
