"""SQLite side of the ingest seam: the driver's executemany inside the request transaction.

Points, rollup deltas and the series upsert go to ``sqlite3`` as plain tuples with timestamps
already in the text form SQLAlchemy's SQLite ``DateTime`` stores (naive UTC,
"YYYY-MM-DD HH:MM:SS.ffffff", so ranges still compare as text) and JSON as canonical text:
SQLAlchemy's per-row dict and type processing cost several times the insert itself.
"""

from __future__ import annotations

import functools
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from itertools import chain
from typing import Any, cast

import orjson
from sqlalchemy import Boolean, Float, Integer, LargeBinary, String, bindparam, text
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import TypeEngine

from app.db.types import UTCDateTime
from app.metrics.rollups import MINUTE, ROLLUP_COLUMNS, is_fresh
from app.metrics.validation import Batch, Series

_DELETE_POINTS = text(
    "DELETE FROM metric_points WHERE rowid IN (SELECT rowid FROM metric_points WHERE ts < :cutoff LIMIT :n)"
).bindparams(bindparam("cutoff", type_=UTCDateTime()))


_SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"
_INSERT_POINTS = "INSERT INTO metric_points (component, metric_name, series_key, labels, value, ts) VALUES "
_POINT_MARKS = "(?, ?, ?, ?, ?, ?)"
_POINT_WIDTH = _POINT_MARKS.count("?")
# Rows per multi-row INSERT: 6 parameters a row stays under the 32,766 bound parameters SQLite
# allows by default since 3.32 (older builds: 999).
CHUNK_ROWS = 1000 if sqlite3.sqlite_version_info >= (3, 32, 0) else 160
# Fewer rows than this left after the chunks go one row per step (executemany): a power-of-two
# statement each would cost more round trips to the driver thread than they save.
FEW_ROWS = 64


@functools.cache
def _insert_points_sql(rows: int) -> str:
    return _INSERT_POINTS + ", ".join([_POINT_MARKS] * rows)


def points_chunks(flat: tuple) -> Iterator[tuple[str, list[tuple]]]:
    """(statement, parameter sets) that write the rows of ``flat`` (their ``_POINT_WIDTH``
    parameters each, row after row) in order, each pair one call to the driver: every full chunk of
    ``CHUNK_ROWS`` rows (one multi-row INSERT, executed once per chunk), then the rest in power-of-two
    chunks down to ``FEW_ROWS``, then the last few rows one at a time. A handful of statement texts
    serve every batch size (each prepared once in the driver's statement cache), and a 10,000-point
    batch is one call. One step per chunk instead of one per row: the driver thread takes the GIL to
    bind a chunk's parameters and gives it back for the whole insert, instead of taking and giving it
    back around every row while the event loop wants it, and SQLite runs ten statements instead of
    ten thousand. Measured: ~20% less CPU per row than executemany, in one thread."""
    width, rows = _POINT_WIDTH, len(flat) // _POINT_WIDTH
    full = rows // CHUNK_ROWS
    if full:
        step = width * CHUNK_ROWS
        yield _insert_points_sql(CHUNK_ROWS), [flat[i * step : (i + 1) * step] for i in range(full)]
    at, left = full * CHUNK_ROWS, rows - full * CHUNK_ROWS
    while left >= FEW_ROWS:
        size = 1 << (left.bit_length() - 1)
        yield _insert_points_sql(size), [flat[width * at : width * (at + size)]]
        at, left = at + size, left - size
    if left:
        yield _insert_points_sql(1), [flat[width * i : width * (i + 1)] for i in range(at, rows)]


_INSERT_ROLLUPS = (
    f"INSERT INTO metric_rollups ({', '.join(ROLLUP_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(ROLLUP_COLUMNS))})"
)
_BUCKET = ROLLUP_COLUMNS.index("bucket_start")
# Same semantics as ``ingest_pg._UPSERT_SERIES``: a late, older point never overwrites a newer one.
_UPSERT_SERIES = (
    "INSERT INTO metric_series (component, metric_name, series_key, labels, last_value, last_ts, first_seen) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (component, metric_name, series_key) DO UPDATE "
    "SET last_value = excluded.last_value, last_ts = excluded.last_ts "
    "WHERE metric_series.last_ts <= excluded.last_ts"
)


def _sqlite_ts(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime(_SQLITE_TS)


class SQLiteIngest:
    name = "sqlite"
    sends_points_first = False  # every row is computed before the first write takes the write lock

    async def insert_points(self, session: AsyncSession, batch: Batch) -> None:
        # Plain tuples for the driver: labels are the series' canonical JSON and each distinct
        # timestamp is formatted once, as SQLAlchemy's SQLite DateTime stores it (naive UTC,
        # "YYYY-MM-DD HH:MM:SS.ffffff", so ranges still compare as text). Per-row type processing
        # through SQLAlchemy cost ~3x as much. The rows go as multi-row INSERTs (``points_chunks``).
        conn = await session.connection()
        series, stamps, sids = batch.series, batch.stamps, batch.sids
        text_of = {id(st): st.ts.strftime(_SQLITE_TS) for st in {id(st): st for st in stamps}.values()}
        # The rows' parameters as one flat tuple, built by C-level maps (``zip`` reuses its tuple
        # while ``chain`` flattens it: no tuple per row); its slices are the chunks' parameters.
        flat = tuple(
            chain.from_iterable(
                zip(
                    map([s.component for s in series].__getitem__, sids),
                    map([s.metric_name for s in series].__getitem__, sids),
                    map([s.series_key for s in series].__getitem__, sids),
                    map([s.labels_json for s in series].__getitem__, sids),
                    batch.values,
                    map(text_of.__getitem__, map(id, stamps)),
                    strict=True,
                )
            )
        )
        for sql, params in points_chunks(flat):
            await conn.exec_driver_sql(sql, params)

    async def insert_rollups(self, session: AsyncSession, rows: list[tuple]) -> None:
        if not rows:
            return
        conn = await session.connection()
        text_of = {bucket: _sqlite_ts(bucket) for bucket in {row[_BUCKET] for row in rows}}
        await conn.exec_driver_sql(
            _INSERT_ROLLUPS, [(*row[:_BUCKET], text_of[row[_BUCKET]], *row[_BUCKET + 1 :]) for row in rows]
        )

    async def upsert_series(
        self, session: AsyncSession, latest: list[tuple[Series, float, datetime]], now: datetime
    ) -> None:
        conn = await session.connection()
        first_seen = _sqlite_ts(now)
        await conn.exec_driver_sql(
            _UPSERT_SERIES,
            [
                (s.component, s.metric_name, s.series_key, s.labels_json, value, _sqlite_ts(ts), first_seen)
                for s, value, ts in latest
            ],
        )

    async def delete_points_before(self, session: AsyncSession, cutoff: datetime, limit: int) -> int:
        result = await session.execute(_DELETE_POINTS, {"cutoff": cutoff, "n": limit})
        return cast("CursorResult[Any]", result).rowcount or 0  # a DML statement's result is a CursorResult

    # --- rollup compaction ----------------------------------------------------------------------
    async def take_rollups(self, session: AsyncSession, batch: int) -> tuple[int, list[Any], list[Any]]:
        """(deltas claimed, rows to merge, fresh minute deltas claimed): up to ``batch`` pending deltas
        (oldest first) and the compacted rows of their buckets; the rows of buckets that have several
        are deleted and returned (rows of ``ROLLUP_COLUMNS``) for the compactor to write back merged,
        and a bucket's single new delta is flagged compacted in place (an update touches no index but
        the pending one here; deleting and re-inserting it cost SQLite more than the rest of the round).
        The bulk statements take the ids as one JSON array (row-value ``IN`` lists cost SQLAlchemy more
        to bind than the rest of the round). Without row locks a second compactor may have taken some of
        them meanwhile: then this round raises ``CompactionRaced`` and rolls back."""
        from app.metrics.compaction import CompactionRaced

        deltas = list(await session.execute(_PENDING_ROLLUPS, {"n": batch}))
        if not deltas:
            return 0, [], []
        merged = list(await session.execute(_COMPACTED_ROLLUPS, {"ids": _json_ids(row[0] for row in deltas)}))
        rows = (*deltas, *merged)
        per_bucket = Counter(tuple(row[1:6]) for row in rows)
        await session.execute(
            _FLAG_ROLLUPS, {"ids": _json_ids(row[0] for row in deltas if per_bucket[tuple(row[1:6])] == 1)}
        )
        taken = [row for row in rows if per_bucket[tuple(row[1:6])] > 1]
        if taken:
            result = await session.execute(_DELETE_ROLLUPS, {"ids": _json_ids(row[0] for row in taken)})
            removed = cast("CursorResult[Any]", result).rowcount or 0  # a DELETE's result is a CursorResult
            if removed != len(taken):  # refuse rather than count a bucket twice
                raise CompactionRaced(f"rollup compaction removed {removed} of {len(taken)} rows")
        fresh = [row[1:] for row in deltas if row[1] == MINUTE and is_fresh(row[11])]
        return len(deltas), [row[1:] for row in taken], fresh


def _json_ids(ids: Iterable[int]) -> str:
    return orjson.dumps(list(ids)).decode()


_ROW_TYPES: dict[str, TypeEngine[Any]] = {
    "id": Integer(),
    "resolution": Integer(),
    "component": String(),
    "metric_name": String(),
    "series_key": String(),
    "bucket_start": UTCDateTime(),
    "count": Integer(),
    "sum": Float(),
    "min": Float(),
    "max": Float(),
    "sumsq": Float(),
    "sketch": LargeBinary(),
    "compacted": Boolean(),
}
_PENDING_ROLLUPS = text(
    f"SELECT id, {', '.join(ROLLUP_COLUMNS)} FROM metric_rollups WHERE NOT compacted ORDER BY id LIMIT :n"
).columns(**_ROW_TYPES)
# The compacted rows of the buckets of the given deltas (their ids, one JSON array), in key order.
_COMPACTED_ROLLUPS = text(
    f"SELECT r.id, {', '.join(f'r.{c}' for c in ROLLUP_COLUMNS)} "
    "FROM metric_rollups AS r JOIN (SELECT DISTINCT resolution, component, metric_name, series_key, "
    "bucket_start FROM metric_rollups WHERE id IN (SELECT value FROM json_each(:ids))) AS k "
    "ON r.component = k.component AND r.metric_name = k.metric_name AND r.resolution = k.resolution "
    "AND r.bucket_start = k.bucket_start AND r.series_key = k.series_key "
    "WHERE r.compacted "
    "ORDER BY r.resolution, r.component, r.metric_name, r.series_key, r.bucket_start"
).columns(**_ROW_TYPES)
_FLAG_ROLLUPS = text(
    "UPDATE metric_rollups SET compacted = 1 WHERE id IN (SELECT value FROM json_each(:ids))"
)
_DELETE_ROLLUPS = text("DELETE FROM metric_rollups WHERE id IN (SELECT value FROM json_each(:ids))")
