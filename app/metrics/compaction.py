"""Rollup compaction, in bulk.

Ingest appends one *delta* row per (series, bucket) per batch (``compacted = false``); readers merge
whatever rows a bucket has, so compaction is only about keeping that number small. A round:

1. takes up to ``batch`` pending deltas out of the table through the partial index on ``NOT
   compacted`` (oldest first; ``FOR UPDATE SKIP LOCKED`` on Postgres, so replicas take disjoint sets
   and never wait on each other or on ingest), with the already-compacted rows of the same buckets
   (locked in key order: no deadlocks between replicas); on Postgres one ``DELETE ... RETURNING``;
2. writes each bucket back as one compacted row through the dialect's bulk insert: its rows merged
   (every bucket of the round at once: ``rollup_merge.merge_groups``), or a single new delta as it was
   (SQLite flags such a delta in place instead: there an update is cheaper than a delete and an
   insert).

That is two statements per round on Postgres (five on SQLite) whatever the number of buckets. The
previous design (a ``GROUP BY ... HAVING count(*) > 1`` over the whole rollup table, then one
transaction per bucket) cost ~29 us of app CPU per ingested point on Postgres (~90 on SQLite):
several times the ingest itself, so sustained ingest could never be compacted.

If two replicas merge into the same bucket at the same moment, the second may not see the first's
new row and leaves a second compacted row for that bucket: readers merge it, nothing is counted twice.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import TYPE_CHECKING

from app.db.session import session_scope
from app.metrics.ingest_pg import ingest_for
from app.metrics.rollup_merge import coarse_deltas, merge_groups
from app.metrics.rollups import ROLLUP_COLUMNS, ROLLUP_KEY
from app.platform.loops import LoopService

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.platform.core import Core


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
                    n, coarse = await compact_round_rows(session, self.batch)
            except CompactionRaced:
                break  # another compactor got there first: rolled back, the next run retries
            done += n
            if n < self.batch and not coarse:
                break  # (a round that wrote coarser deltas is followed by one that merges them)
        self.compacted += done
        return done


class CompactionRaced(Exception):
    """Rows this round meant to merge were gone when it deleted them: it rolls back whole.
    Only possible without row locks (two compactors on SQLite); Postgres locks the rows it reads."""


_STATS = slice(len(ROLLUP_KEY), len(ROLLUP_KEY) + 6)  # count, sum, min, max, sumsq, sketch
_SKETCH = ROLLUP_COLUMNS.index("sketch")


async def compact_round(session: AsyncSession, batch: int) -> int:
    """One bulk round in the caller's transaction; returns the number of deltas claimed."""
    return (await compact_round_rows(session, batch))[0]


async def compact_round_rows(session: AsyncSession, batch: int) -> tuple[int, int]:
    """One bulk round in the caller's transaction: (deltas claimed, coarser deltas written).

    The dialect's ingest seam claims up to ``batch`` pending deltas and takes the rows to merge out
    of the table (rows of ``ROLLUP_COLUMNS``: the deltas and the compacted rows of their buckets; on
    Postgres one statement, SQLite flags a bucket's single new delta in place instead); each bucket
    then goes back as one compacted row through the dialect's bulk insert (a single row as it was,
    several merged), beside the coarser levels' deltas of the fresh minute deltas taken (the seam
    returns those apart: SQLite's flagged single deltas are not among the rows to merge)."""
    ingest = ingest_for(session.get_bind().dialect.name)
    claimed, rows, fresh = await ingest.take_rollups(session, batch)
    # Merging a full round's sketches is tens of milliseconds of CPU: on a thread, the event loop
    # keeps its turns (GIL switch interval) instead of stalling probes, flushes and healing for it.
    if len(rows) + len(fresh) < MERGE_INLINE_MAX:
        out = round_rows(rows, fresh)
    else:
        out = await asyncio.to_thread(round_rows, rows, fresh)
    if out:
        await ingest.insert_rollups(session, out)
    return claimed, sum(1 for row in out if not row[-1])  # the coarser deltas: pending


MERGE_INLINE_MAX = 200  # rows merged on the loop itself (a thread hop costs more than that)


def round_rows(rows, fresh) -> list[tuple]:
    """What a round writes back: its buckets merged, and the ten-minute and hour deltas of the fresh
    minute deltas it took (pending: a later round merges them into their buckets)."""
    return merge_buckets(rows) + coarse_deltas(fresh)


def merge_buckets(rows) -> list[tuple]:
    """Rows of ``ROLLUP_COLUMNS`` -> one compacted row per bucket (a single row as it was)."""
    groups: defaultdict[tuple, list] = defaultdict(list)
    for row in rows:
        groups[tuple(row[: len(ROLLUP_KEY)])].append(row)
    merged: list[tuple] = []
    several: list[tuple] = []
    for key, bucket in groups.items():
        if len(bucket) == 1:
            merged.append((*key, *bucket[0][_STATS], True))
        else:
            several.append(key)
    if several:
        fields = merge_groups([[bytes(row[_SKETCH]) for row in groups[key]] for key in several])
        merged += [(*key, *f, True) for key, f in zip(several, fields, strict=True)]
    return merged
