"""SQLite side of the ingest seam: executemany inside the request transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, insert, text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models.metrics import MetricSeries
from app.db.types import UTCDateTime
from app.metrics.rollups import ROLLUP_COLUMNS
from app.metrics.validation import Batch, Series

_DELETE_POINTS = text(
    "DELETE FROM metric_points WHERE rowid IN (SELECT rowid FROM metric_points WHERE ts < :cutoff LIMIT :n)"
).bindparams(bindparam("cutoff", type_=UTCDateTime()))


_SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"
_INSERT_POINTS = ("INSERT INTO metric_points (component, metric_name, series_key, labels, value, ts) "
                  "VALUES (?, ?, ?, ?, ?, ?)")


class SQLiteIngest:
    name = "sqlite"

    async def insert_points(self, session: AsyncSession, batch: Batch) -> None:
        # Plain tuples through the driver's executemany: labels are the series' canonical JSON and
        # each distinct timestamp is formatted once, as SQLAlchemy's SQLite DateTime stores it
        # (naive UTC, "YYYY-MM-DD HH:MM:SS.ffffff", so ranges still compare as text). Per-row type
        # processing through SQLAlchemy cost ~3x as much.
        conn = await session.connection()
        text_of = {id(st): st.ts.strftime(_SQLITE_TS) for st in {id(st): st for st in batch.stamps}.values()}
        series = batch.series
        await conn.exec_driver_sql(_INSERT_POINTS, [
            (s.component, s.metric_name, s.series_key, s.labels_json, v, text_of[id(st)])
            for s, v, st in zip(map(series.__getitem__, batch.sids), batch.values, batch.stamps)])

    async def insert_rollups(self, session: AsyncSession, rows: list[tuple]) -> None:
        from app.db.models.metrics import MetricRollup

        conn = await session.connection()
        await conn.execute(insert(MetricRollup.__table__), [dict(zip(ROLLUP_COLUMNS, row)) for row in rows])

    async def upsert_series(self, session: AsyncSession, latest: list[tuple[Series, float, datetime]],
                            now: datetime) -> None:
        await session.execute(upsert_series_statement(sqlite_insert), [
            {"component": s.component, "metric_name": s.metric_name, "series_key": s.series_key, "labels": s.labels,
             "last_value": value, "last_ts": ts, "first_seen": now} for s, value, ts in latest])

    async def delete_points_before(self, session: AsyncSession, cutoff: datetime, limit: int) -> int:
        result = await session.execute(_DELETE_POINTS, {"cutoff": cutoff, "n": limit})
        return result.rowcount or 0


def upsert_series_statement(dialect_insert):
    """Latest point per series; an older point arriving late never overwrites a newer one.
    Executed with a list of rows (compiled once, cached; insertmanyvalues batches it)."""
    stmt = dialect_insert(MetricSeries.__table__)
    return stmt.on_conflict_do_update(
        index_elements=["component", "metric_name", "series_key"],
        set_={"last_value": stmt.excluded.last_value, "last_ts": stmt.excluded.last_ts},
        where=MetricSeries.__table__.c.last_ts <= stmt.excluded.last_ts,
    )
