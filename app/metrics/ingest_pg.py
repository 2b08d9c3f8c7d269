"""Postgres side of the ingest seam: binary COPY on the request's own connection (same transaction).

``copy_records_to_table`` runs on the raw asyncpg connection under the SQLAlchemy AsyncConnection,
so the COPY commits or rolls back with everything else the request did.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.types import UTCDateTime
from app.metrics.rollups import ROLLUP_COLUMNS
from app.metrics.validation import Batch

POINT_COLUMNS = ("component", "metric_name", "series_key", "labels", "value", "ts")

_DELETE_POINTS = text(
    "DELETE FROM metric_points WHERE ctid = ANY(ARRAY("
    "SELECT ctid FROM metric_points WHERE ts < :cutoff LIMIT :n))"
).bindparams(bindparam("cutoff", type_=UTCDateTime()))


async def raw_connection(session: AsyncSession):
    conn = await session.connection()
    return (await conn.get_raw_connection()).driver_connection


class PostgresIngest:
    name = "postgresql"
    upsert = staticmethod(pg_insert)

    async def insert_points(self, session: AsyncSession, batch: Batch) -> None:
        # The batch encodes itself as a binary COPY stream (series fields and timestamps are encoded
        # once per distinct value, not per point; asyncpg's record encoder would also call
        # SQLAlchemy's Python jsonb codec once per row).
        raw = await raw_connection(session)
        await raw.copy_to_table("metric_points", source=batch.copy_payload(), columns=POINT_COLUMNS, format="binary")

    async def insert_rollups(self, session: AsyncSession, rows: list[tuple]) -> None:
        raw = await raw_connection(session)
        await raw.copy_records_to_table("metric_rollups", columns=ROLLUP_COLUMNS, records=rows)

    async def delete_points_before(self, session: AsyncSession, cutoff: datetime, limit: int) -> int:
        result = await session.execute(_DELETE_POINTS, {"cutoff": cutoff, "n": limit})
        return result.rowcount or 0


def ingest_for(dialect_name: str):
    """The one place the dialect is chosen."""
    if dialect_name == "postgresql":
        return PostgresIngest()
    from app.metrics.ingest_sqlite import SQLiteIngest

    return SQLiteIngest()
