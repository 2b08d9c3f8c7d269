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
from app.metrics.rollups import MINUTE, ROLLUP_COLUMNS, is_fresh
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


# One compaction round's rows, taken out of the table in one statement: up to $1 pending deltas
# (oldest first, SKIP LOCKED so replicas take disjoint sets) and the compacted rows of their buckets
# (locked in key order, so two replicas merging into one bucket cannot deadlock). A compacted row
# another replica deleted meanwhile is skipped by the lock, so it is never merged twice.
# Both sets are found and locked before the one DELETE: looking the buckets' compacted rows up after
# the deltas' own DELETE, in the same statement, cost the backend ~3 us per delta (5,000-delta rounds:
# ~6.2 against ~3.4 us per delta for the whole statement).
_ROW = f"{', '.join(ROLLUP_COLUMNS)}"
# ``id = ANY(ARRAY(...))``: the delete goes through the primary key whatever the planner thinks of
# the subqueries' sizes (a semi-join may otherwise scan the whole table).
_TAKE_ROLLUPS = (
    "WITH deltas AS MATERIALIZED (SELECT id, resolution, component, metric_name, series_key, bucket_start "
    "FROM metric_rollups WHERE NOT compacted ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED), "
    "merged AS (SELECT r.id FROM metric_rollups AS r "
    "JOIN (SELECT DISTINCT resolution, component, metric_name, series_key, bucket_start FROM deltas) AS k "
    "ON r.component = k.component AND r.metric_name = k.metric_name AND r.resolution = k.resolution "
    "AND r.bucket_start = k.bucket_start AND r.series_key = k.series_key WHERE r.compacted "
    "ORDER BY r.resolution, r.component, r.metric_name, r.series_key, r.bucket_start FOR UPDATE OF r) "
    "DELETE FROM metric_rollups WHERE id = ANY(ARRAY(SELECT id FROM deltas UNION ALL SELECT id FROM merged)) "
    f"RETURNING {_ROW}"
)


async def raw_connection(session: AsyncSession) -> Any:
    return await driver_connection(session)


class PostgresIngest:
    name = "postgresql"
    # The points' COPY is sent before the rest of the batch's rows are computed (``repository.store``):
    # the backend stores the points while this process builds the rollup deltas.
    sends_points_first = True

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
    async def take_rollups(self, session: AsyncSession, batch: int) -> tuple[int, list[Any], list[Any]]:
        """(deltas claimed, rows to merge, fresh minute deltas among them): up to ``batch`` pending deltas
        and the compacted rows of their buckets, deleted and returned (rows of ``ROLLUP_COLUMNS``) in
        one statement; the compactor writes each bucket back as one compacted row. (Claiming the deltas,
        reading the compacted rows, flagging single deltas and deleting the rest took four statements
        and as many round trips, the claimed rows went through SQLAlchemy's row processing, and each
        flagged delta cost an update of every index.)"""
        raw = await raw_connection(session)
        rows = await raw.fetch(_TAKE_ROLLUPS, batch)
        deltas = [row for row in rows if not row["compacted"]]
        fresh = [row for row in deltas if row["resolution"] == MINUTE and is_fresh(row["sketch"])]
        # The deltas first, then the compacted rows (each in the order deleted): a bucket's sketches are
        # merged in the order they come, as when the two sets were deleted apart.
        return len(deltas), deltas + [row for row in rows if row["compacted"]], fresh


def ingest_for(dialect_name: str):
    """The one place the dialect is chosen."""
    if dialect_name == "postgresql":
        return PostgresIngest()
    from app.metrics.ingest_sqlite import SQLiteIngest

    return SQLiteIngest()
