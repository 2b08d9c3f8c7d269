"""Maintenance loops: raw/rollup retention in bounded batches, and rollup compaction.

Retention deletes at most ``batch`` rows per transaction (short transactions, so ingest never
waits on a long lock or a huge WAL flush) and at most ``max_batches`` per run; what is left is taken
on the next run. Raw points are found through a BRIN index on ``ts`` (Postgres) / a B-tree (SQLite)
and deleted by physical row id (``ctid`` / ``rowid``), behind the ingest dialect seam.

Why not daily partitions on Postgres: a partitioned ``metric_points`` needs its own DDL path in the
migration (SQLite has no partitions), a partition-maintenance loop to create tomorrow's partition
ahead of time, and makes COPY route rows; batched deletes keep one schema for both dialects and
measure well below the ingest rate. Revisit if retention ever falls behind.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select

from app.background import LoopService
from app.db.models import MetricRollup
from app.db.session import session_scope
from app.metrics.repository import MetricsRepository
from app.metrics.rollups import HOUR, MINUTE, ROLLUP_COLUMNS, TEN_MINUTES, encode_sketch, merge_blobs

if TYPE_CHECKING:
    from app.lifespan import GuardState

log = logging.getLogger("pipeline_guard.metrics")


class MetricsRetention(LoopService):
    name = "metrics-retention"

    def __init__(self, state: GuardState, interval: float = 60.0, batch: int = 5000, max_batches: int = 200):
        super().__init__(interval, metrics=state.metrics)
        self.state = state
        self.batch = batch
        self.max_batches = max_batches
        self.deleted = {"points": 0, "minute_rollups": 0, "ten_minute_rollups": 0, "hour_rollups": 0}

    async def run_once(self, now: datetime | None = None) -> dict[str, int]:
        now = now or datetime.now(UTC)
        mon = self.state.settings.pipeline.monitoring
        raw_cutoff = now - timedelta(seconds=mon.metrics_retention)
        # Minute and ten-minute rollups only answer the edges of a range (finer than an hour), so
        # they are kept a little longer than the raw points; hour rollups for ``rollup_retention``.
        minute_cutoff = now - timedelta(seconds=max(mon.metrics_retention * 2, mon.metrics_retention + 86400))
        minute_cutoff = max(minute_cutoff, now - timedelta(seconds=mon.rollup_retention))
        hour_cutoff = now - timedelta(seconds=mon.rollup_retention)
        done = {
            "points": await self._drain(lambda repo: repo.delete_points_before(raw_cutoff, self.batch)),
            "minute_rollups": await self._drain(lambda repo: repo.delete_rollups_before(MINUTE, minute_cutoff, self.batch)),
            "ten_minute_rollups": await self._drain(
                lambda repo: repo.delete_rollups_before(TEN_MINUTES, minute_cutoff, self.batch)),
            "hour_rollups": await self._drain(lambda repo: repo.delete_rollups_before(HOUR, hour_cutoff, self.batch)),
        }
        for key, n in done.items():
            self.deleted[key] += n
        return done

    async def _drain(self, step) -> int:
        total = 0
        for _ in range(self.max_batches):
            async with session_scope(self.state.sessionmaker) as session:
                n = await step(MetricsRepository(session))
            total += n
            if n < self.batch:
                break
        return total


class RollupCompactor(LoopService):
    """Merges each bucket's delta rows (one per ingest batch) into one, so readers merge ~1 row per
    bucket. Deltas of still-open buckets are merged too; later batches simply add new deltas."""

    name = "rollup-compactor"

    def __init__(self, state: GuardState, interval: float = 15.0, max_buckets: int = 2000):
        super().__init__(interval, metrics=state.metrics)
        self.state = state
        self.max_buckets = max_buckets
        self.compacted = 0

    async def run_once(self) -> int:
        r = MetricRollup.__table__.c
        keys = [r.resolution, r.component, r.metric_name, r.series_key, r.bucket_start]
        async with session_scope(self.state.sessionmaker) as session:
            groups = (await session.execute(
                select(*keys).group_by(*keys).having(func.count() > 1).limit(self.max_buckets))).all()
        merged = 0
        for group in groups:
            try:
                merged += await self._compact(group, keys)
            except _Raced:
                log.info("rollup bucket compacted concurrently elsewhere; skipped")
        self.compacted += merged
        return merged

    async def _compact(self, group, keys) -> int:
        r = MetricRollup.__table__.c
        async with session_scope(self.state.sessionmaker) as session:
            cond = [col == val for col, val in zip(keys, group)]
            rows = (await session.execute(select(r.id, r.sketch).where(*cond))).all()
            if len(rows) < 2:
                return 0
            ids = [row.id for row in rows]
            result = await session.execute(delete(MetricRollup.__table__).where(r.id.in_(ids)))
            if (result.rowcount or 0) != len(ids):
                # Another replica compacted this bucket concurrently: roll back, nothing lost.
                raise _Raced()
            sk = merge_blobs([bytes(row.sketch) for row in rows])
            values = dict(zip(ROLLUP_COLUMNS, (group[0], group[1], group[2], group[3], group[4], sk.count, sk.sum,
                                               sk.min, sk.max, sk.sum_of_squares, encode_sketch(sk), True)))
            await session.execute(MetricRollup.__table__.insert().values(**values))
            return len(ids)


class _Raced(Exception):
    pass
