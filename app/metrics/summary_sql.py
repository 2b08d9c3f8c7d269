"""The summary's one read (rollup sketches for whole buckets, raw values at the edges), straight
through the driver.

The ten-minute and hour levels count a minute delta only once compaction has taken it (see
``rollups``), so the part of a range answered by them also reads the fresh minute deltas of that
range (pending ones: the index on ``NOT compacted`` keeps that cheap) and folds them in; an answer
is the same before and after compaction.

A one-hour summary is a dozen small index ranges; building that statement with SQLAlchemy
expressions and wrapping every row in a ``Row`` cost more than the database spent answering it.
The SQL text depends only on the plan's shape (how many rollup and raw ranges, whether a series
key is given), so it is built once per shape and cached, and the driver keeps it prepared. On
Postgres each raw range comes back as one ``array_agg`` row (decoded in C by asyncpg) instead of
one row per point.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.metrics.ingest_pg import raw_connection
from app.metrics.rollups import FRESH_TAG_BYTE, MINUTE, RangePlan

_SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's SQLite DateTime text (naive UTC)


@functools.lru_cache(maxsize=256)
def _statement(dialect: str, rollups: int, folds: int, raws: int, keyed: bool) -> str:
    """UNION ALL of ``rollups`` bucket ranges, ``folds`` ranges of fresh minute deltas (those the
    coarser levels do not count yet) then ``raws`` point ranges; every part selects (sketch, values)
    with the other column NULL."""
    pg = dialect == "postgresql"
    n = 0

    def p() -> str:
        nonlocal n
        n += 1
        return f"${n}" if pg else "?"

    def series(table: str) -> str:
        # Postgres numbers its parameters, so every part reuses $1..$3; with qmarks each part
        # takes its own copy of the series parameters.
        if pg:
            return f"{table}.component = $1 AND {table}.metric_name = $2" + (
                f" AND {table}.series_key = $3" if keyed else ""
            )
        return f"{table}.component = ? AND {table}.metric_name = ?" + (
            f" AND {table}.series_key = ?" if keyed else ""
        )

    if pg:
        n = 3 if keyed else 2
    parts = []
    for _ in range(rollups):
        parts.append(
            f"SELECT r.sketch, NULL{'::float8[]' if pg else ''} FROM metric_rollups r WHERE {series('r')} "
            f"AND r.resolution = {p()} AND r.bucket_start >= {p()} AND r.bucket_start < {p()}"
        )
    fresh = (
        f"get_byte(r.sketch, 0) = {FRESH_TAG_BYTE[0]}"
        if pg
        else f"substr(r.sketch, 1, 1) = X'{FRESH_TAG_BYTE.hex()}'"
    )
    # Through the index of pending rows: its size is the compaction backlog (seconds of ingest),
    # while a series' minute rows over a long range are thousands. Postgres' planner takes it by
    # itself; SQLite's (no statistics) would take the series index and read every minute row.
    pending = "" if pg else " INDEXED BY ix_metric_rollups_pending"
    for _ in range(folds):
        parts.append(
            f"SELECT r.sketch, NULL{'::float8[]' if pg else ''} FROM metric_rollups r{pending} "
            f"WHERE {series('r')} AND r.resolution = {MINUTE} AND NOT r.compacted "
            f"AND r.bucket_start >= {p()} AND r.bucket_start < {p()} AND {fresh}"
        )
    for _ in range(raws):
        cond = series("t")
        if pg:
            parts.append(
                f"SELECT NULL::bytea, array_agg(t.value) FROM metric_points t WHERE {cond} "
                f"AND t.ts >= {p()} AND t.ts < {p()}"
            )
        else:
            parts.append(
                f"SELECT NULL, t.value FROM metric_points t WHERE {cond} AND t.ts >= {p()} AND t.ts < {p()}"
            )
    return " UNION ALL ".join(parts)


async def summary_inputs(
    session: AsyncSession, component: str, metric_name: str, series_key: str | None, plan: RangePlan
) -> tuple[list[bytes], list[float]]:
    """(encoded sketches of the whole buckets, raw values of the edges) for ``plan``."""
    if not plan.rollups and not plan.raw:
        return [], []
    dialect = session.get_bind().dialect.name
    keyed = series_key is not None
    folds = fold_ranges(plan)
    sql = _statement(dialect, len(plan.rollups), len(folds), len(plan.raw), keyed)
    head: tuple[Any, ...] = (component, metric_name, series_key) if keyed else (component, metric_name)
    blobs: list[bytes] = []
    values: list[float] = []
    if dialect == "postgresql":
        args: list[Any] = list(head)
        for res, a, b in plan.rollups:
            args += (res, datetime.fromtimestamp(a, UTC), datetime.fromtimestamp(b, UTC))
        for a, b in (*folds, *plan.raw):
            args += (datetime.fromtimestamp(a, UTC), datetime.fromtimestamp(b, UTC))
        conn = await raw_connection(session)
        for sketch, vals in await conn.fetch(sql, *args):
            if sketch is not None:
                blobs.append(sketch)
            elif vals:
                values += vals
        return blobs, values
    params: list[Any] = []
    for res, a, b in plan.rollups:
        params += (*head, res, _sqlite_ts(a), _sqlite_ts(b))
    for a, b in (*folds, *plan.raw):
        params += (*head, _sqlite_ts(a), _sqlite_ts(b))
    connection = await session.connection()
    rows: Sequence[Any] = (await connection.exec_driver_sql(sql, tuple(params))).all()  # (sketch, value)
    for sketch, value in rows:
        if sketch is not None:
            blobs.append(bytes(sketch))
        else:
            values.append(value)
    return blobs, values


def fold_ranges(plan: RangePlan) -> list[tuple[float, float]]:
    """The ranges the plan answers from coarser levels than a minute, contiguous ones joined: where
    the fresh minute deltas must be folded in (one part for a plan's middle, whatever its levels)."""
    spans: list[tuple[float, float]] = []
    for res, a, b in plan.rollups:
        if res == MINUTE:
            continue
        if spans and spans[-1][1] == a:
            spans[-1] = (spans[-1][0], b)
        else:
            spans.append((a, b))
    return spans


def _sqlite_ts(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime(_SQLITE_TS)
