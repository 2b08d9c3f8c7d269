"""Postgres side of the ingest seam: binary COPY on the request's own connection (same transaction).

``copy_records_to_table`` runs on the raw asyncpg connection under the SQLAlchemy AsyncConnection,
so the COPY commits or rolls back with everything else the request did.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import bindparam, text
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.session import driver_connection
from app.db.types import UTCDateTime
from app.metrics.rollups import ROLLUP_COLUMNS
from app.metrics.validation import Batch, Series

POINT_COLUMNS = ("component", "metric_name", "series_key", "labels", "value", "ts")

_DELETE_POINTS = text(
    "DELETE FROM metric_points WHERE ctid = ANY(ARRAY("
    "SELECT ctid FROM metric_points WHERE ts < :cutoff LIMIT :n))"
).bindparams(bindparam("cutoff", type_=UTCDateTime()))


# Same semantics as ``ingest_sqlite._UPSERT_SERIES``: a late, older point never overwrites a newer one.
_UPSERT_SERIES = (
    "INSERT INTO metric_series (component, metric_name, series_key, labels, last_value, last_ts, first_seen) "
    "SELECT c, m, k, l::jsonb, v, t, $7 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], "
    "$5::float8[], $6::timestamptz[]) AS u(c, m, k, l, v, t) "
    "ON CONFLICT (component, metric_name, series_key) DO UPDATE "
    "SET last_value = excluded.last_value, last_ts = excluded.last_ts "
    "WHERE metric_series.last_ts <= excluded.last_ts"
)


# The compacted rows of the buckets of the given deltas (their ids), locked in key order.
_COMPACTED_ROLLUPS = (
    "SELECT r.id, r.resolution, r.component, r.metric_name, r.series_key, r.bucket_start, r.sketch "
    "FROM metric_rollups AS r JOIN (SELECT DISTINCT resolution, component, metric_name, series_key, "
    "bucket_start FROM metric_rollups WHERE id = ANY($1::bigint[])) AS k "
    "ON r.component = k.component AND r.metric_name = k.metric_name AND r.resolution = k.resolution "
    "AND r.bucket_start = k.bucket_start AND r.series_key = k.series_key "
    "WHERE r.compacted "
    "ORDER BY r.resolution, r.component, r.metric_name, r.series_key, r.bucket_start FOR UPDATE OF r"
)
_FLAG_ROLLUPS = "UPDATE metric_rollups SET compacted = true WHERE id = ANY($1::bigint[])"
_DELETE_ROLLUPS = "DELETE FROM metric_rollups WHERE id = ANY($1::bigint[])"


async def raw_connection(session: AsyncSession) -> Any:
    return await driver_connection(session)


class PostgresIngest:
    name = "postgresql"

    async def insert_points(self, session: AsyncSession, batch: Batch) -> None:
        # The batch encodes itself as a binary COPY stream (series fields and timestamps are encoded
        # once per distinct value, not per point; asyncpg's record encoder would also call
        # SQLAlchemy's Python jsonb codec once per row).
        raw = await raw_connection(session)
        await raw.copy_to_table(
            "metric_points", source=batch.copy_payload(), columns=POINT_COLUMNS, format="binary"
        )

    async def insert_rollups(self, session: AsyncSession, rows: list[tuple]) -> None:
        raw = await raw_connection(session)
        await raw.copy_records_to_table("metric_rollups", columns=ROLLUP_COLUMNS, records=rows)

    async def upsert_series(
        self, session: AsyncSession, latest: list[tuple[Series, float, datetime]], now: datetime
    ) -> None:
        """One prepared statement over arrays (unnest) on the request's connection: a tenth of the
        CPU of SQLAlchemy's per-row parameter processing for the same rows."""
        series, values, stamps = zip(*latest, strict=True)
        raw = await raw_connection(session)
        await raw.execute(
            _UPSERT_SERIES,
            [s.component for s in series],
            [s.metric_name for s in series],
            [s.series_key for s in series],
            [s.labels_json for s in series],
            list(values),
            list(stamps),
            now,
        )

    async def delete_points_before(self, session: AsyncSession, cutoff: datetime, limit: int) -> int:
        result = await session.execute(_DELETE_POINTS, {"cutoff": cutoff, "n": limit})
        return cast("CursorResult[Any]", result).rowcount or 0  # a DML statement's result is a CursorResult

    # --- rollup compaction ----------------------------------------------------------------------
    async def compacted_rollups(self, session: AsyncSession, deltas: list[Any]) -> list[Any]:
        """The compacted rows of the buckets of ``deltas`` (rows of (id, *ROLLUP_KEY, sketch)), as
        rows of the same shape: one statement given the deltas' ids. (Row-value ``IN`` lists of 500
        keys cost Postgres more CPU to plan and run than the rest of a compaction round, and
        SQLAlchemy as much to bind; five key arrays cost asyncpg a type check per element.)"""
        raw = await raw_connection(session)
        return list(await raw.fetch(_COMPACTED_ROLLUPS, [row[0] for row in deltas]))

    async def flag_rollups_compacted(self, session: AsyncSession, ids: list[int]) -> None:
        if ids:
            await (await raw_connection(session)).execute(_FLAG_ROLLUPS, ids)

    async def delete_rollups(self, session: AsyncSession, ids: list[int]) -> int:
        if not ids:
            return 0
        status = await (await raw_connection(session)).execute(_DELETE_ROLLUPS, ids)
        return int(status.split()[-1])  # "DELETE n"


def ingest_for(dialect_name: str):
    """The one place the dialect is chosen."""
    if dialect_name == "postgresql":
        return PostgresIngest()
    from app.metrics.ingest_sqlite import SQLiteIngest

    return SQLiteIngest()
