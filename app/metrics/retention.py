"""Retention: raw points and rollups deleted in bounded batches (compaction is in ``compaction.py``).

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

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from app.db.session import session_scope
from app.metrics.repository import MetricsRepository
from app.metrics.rollups import HOUR, MINUTE, TEN_MINUTES
from app.platform.loops import LoopService

if TYPE_CHECKING:
    from app.platform.core import Core


class MetricsRetention(LoopService):
    name = "metrics-retention"

    def __init__(self, state: Core, interval: float = 60.0, batch: int = 5000, max_batches: int = 200):
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
            "minute_rollups": await self._drain(
                lambda repo: repo.delete_rollups_before(MINUTE, minute_cutoff, self.batch)
            ),
            "ten_minute_rollups": await self._drain(
                lambda repo: repo.delete_rollups_before(TEN_MINUTES, minute_cutoff, self.batch)
            ),
            "hour_rollups": await self._drain(
                lambda repo: repo.delete_rollups_before(HOUR, hour_cutoff, self.batch)
            ),
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
