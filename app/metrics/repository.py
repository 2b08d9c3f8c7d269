"""Data access for metrics. Only flushes; the caller owns the transaction.

The dialect-specific writes (COPY vs executemany, batched deletes by physical row id) sit behind
``ingest_for(dialect)``, and the summary's hot read is driver SQL in ``summary_sql``; everything
else here is portable SQLAlchemy.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, delete, func, select
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Component, MetricRollup, MetricSeries, metric_points
from app.metrics.ingest_pg import ingest_for
from app.metrics.rollups import MINUTE, RangePlan, build_deltas
from app.metrics.summary_sql import summary_inputs
from app.metrics.validation import Batch, Series


def _dt(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _derived_rows(batch: Batch) -> tuple[list[tuple], list[tuple[Series, float, datetime]]]:
    """A batch's rollup deltas, and each series' latest point (sorted so that concurrent batches
    lock series rows in the same order: no deadlocks). The deltas first: they build the batch's
    numpy columns, which ``latest`` then reads."""
    deltas = build_deltas(batch)
    latest = [(batch.series[sid], i) for sid, i in batch.latest().items()]
    latest.sort(key=lambda si: (si[0].component, si[0].metric_name, si[0].series_key))
    return deltas, [(s, *batch.value_and_time(i)) for s, i in latest]


class MetricsRepository:
    def __init__(self, session: AsyncSession):
        self.session = session
        self.ingest = ingest_for(session.get_bind().dialect.name)

    # --- writes ------------------------------------------------------------------------------
    async def store(self, batch: Batch) -> None:
        """Raw points, rollup deltas and the series' latest values, in the caller's transaction.

        SQLite: everything is computed before the first write, so its write lock (taken by the
        first write, held until the commit) covers only the statements, and a concurrent batch
        computes its own rows meanwhile instead of waiting behind this one's Python work.
        Postgres (``ingest.sends_points_first``): the points' COPY goes out first, and the rollup
        deltas and series rows are computed while the database stores the points."""
        if not self.ingest.sends_points_first:
            deltas, series = _derived_rows(batch)
            await self.ingest.insert_points(self.session, batch)
        else:
            copy = asyncio.ensure_future(self.ingest.insert_points(self.session, batch))
            try:
                await asyncio.sleep(0)  # the COPY's task sends its data before the work below
                deltas, series = _derived_rows(batch)
            except BaseException:
                # The connection is the COPY's until it ends: only then may the caller roll back.
                with contextlib.suppress(BaseException):
                    await copy
                raise
            await copy
        await self.ingest.insert_rollups(self.session, deltas)
        await self.ingest.upsert_series(self.session, series, datetime.now(UTC))

    async def known_components(self, names: set[str]) -> set[str]:
        result = await self.session.execute(select(Component.name).where(Component.name.in_(names)))
        return set(result.scalars())

    # --- reads -------------------------------------------------------------------------------
    async def points(
        self,
        *,
        component: str | None,
        metric_name: str | None,
        series_key: str | None,
        start: datetime | None,
        end: datetime | None,
        limit: int,
        offset: int,
    ) -> list[dict[str, Any]]:
        t = metric_points.c
        q = select(t.component, t.metric_name, t.labels, t.value, t.ts)
        q = self._filters(q, component, metric_name, series_key, start, end)
        q = q.order_by(t.ts.desc()).limit(limit).offset(offset)
        return [dict(r._mapping) for r in await self.session.execute(q)]

    async def raw_values(
        self,
        component: str,
        metric_name: str,
        series_key: str | None,
        start: datetime,
        end: datetime,
        limit: int,
    ) -> list[float]:
        """Raw values of [start, end), at most ``limit`` (the caller asks one more than it can use)."""
        t = metric_points.c
        q = self._filters(select(t.value), component, metric_name, series_key, start, end).limit(limit)
        return list((await self.session.execute(q)).scalars())

    @staticmethod
    def _filters(q, component, metric_name, series_key, start, end):
        t = metric_points.c
        if component is not None:
            q = q.where(t.component == component)
        if metric_name is not None:
            q = q.where(t.metric_name == metric_name)
        if series_key is not None:
            q = q.where(t.series_key == series_key)
        if start is not None:
            q = q.where(t.ts >= start)
        if end is not None:
            q = q.where(t.ts < end)
        return q

    async def summary_inputs(
        self, component: str, metric_name: str, series_key: str | None, plan: RangePlan
    ) -> tuple[list[bytes], list[float]]:
        """Rollup sketches for the whole buckets and raw values for the edges, in one round trip
        (one simple indexed range per part of the plan, glued with UNION ALL)."""
        return await summary_inputs(self.session, component, metric_name, series_key, plan)

    async def latest(self, component: str | None, names: list[str] | None) -> list[MetricSeries]:
        q = select(MetricSeries)
        if component is not None:
            q = q.where(MetricSeries.component == component)
        if names:
            q = q.where(MetricSeries.metric_name.in_(names))
        q = q.order_by(MetricSeries.component, MetricSeries.metric_name, MetricSeries.series_key).limit(
            10_000
        )
        return list((await self.session.execute(q)).scalars())

    async def unknown_components(self) -> list[dict[str, Any]]:
        s = MetricSeries.__table__.c
        q = (
            select(
                s.component,
                func.min(s.first_seen).label("first_seen"),
                func.max(s.last_ts).label("last_seen"),
                func.count().label("series"),
            )
            .where(s.component.not_in(select(Component.name)))
            .group_by(s.component)
            .order_by(s.component)
        )
        return [dict(r._mapping) for r in await self.session.execute(q)]

    # --- retention ---------------------------------------------------------------------------
    async def delete_points_before(self, cutoff: datetime, limit: int) -> int:
        return await self.ingest.delete_points_before(self.session, cutoff, limit)

    async def delete_rollups_before(self, resolution: int, cutoff: datetime, limit: int) -> int:
        """Rollup rows of ``resolution`` whose bucket starts before ``cutoff``. Minute rows only once
        compacted: a fresh minute delta is all the coarser levels know of its points until
        compaction builds their deltas from it (a late point older than the cutoff)."""
        r = MetricRollup.__table__.c
        where = [r.resolution == resolution, r.bucket_start < cutoff]
        if resolution == MINUTE:
            where.append(r.compacted.is_(True))
        ids = select(r.id).where(*where).limit(limit).scalar_subquery()
        table = cast(Table, MetricRollup.__table__)  # a declarative __table__ is typed FromClause
        result = await self.session.execute(delete(table).where(r.id.in_(ids)))
        return cast("CursorResult[Any]", result).rowcount or 0  # a DML statement's result is a CursorResult
