"""The two bulk writes of every flush - check results and component states - through the DRIVER.

A flush writes up to `MAX_BATCH` results and as many state rows; through SQLAlchemy every row is a
dict whose every value goes through the column type's bind processing, which cost more CPU than the
database's own work. Here the rows are plain tuples handed to the driver, inside the flush's
transaction (the session's own connection, so they commit or roll back with everything else):

- SQLite (aiosqlite): `executemany` of one prepared INSERT / UPDATE; timestamps formatted as
  SQLAlchemy's SQLite DateTime stores them (naive UTC "YYYY-MM-DD HH:MM:SS.ffffff", so text order
  is time order). The result ids are read back from `sqlite_sequence`: the table is AUTOINCREMENT
  and the flush holds the write lock from its INSERT to its commit, so one executemany gets
  consecutive ids ending at the sequence's value.
- Postgres (asyncpg): the ids are taken from the table's sequence first (one `nextval` per row in one
  statement), the rows go in with a binary COPY, and the states are updated by one statement over
  arrays (`UPDATE ... FROM unnest(...)`). A small batch (`SMALL_BATCH`, e.g. a decisive result's
  urgent flush) goes in with one statement over arrays that takes and returns the ids as well.

The dialect is chosen once (`rows_for`); nothing else in monitoring knows about it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.session import driver_connection

DETAIL_MAX = 1000  # characters of a result's detail stored
# Postgres: up to this many results go in with one INSERT (one round trip: a decisive result's urgent
# flush is on the reaction's path); more, with a sequence read and a binary COPY (less CPU per row).
SMALL_BATCH = 64
RESULT_COLUMNS = ("component_id", "observed_at", "outcome", "latency_ms", "detail")
# One state row, in this order (`recorder._state_row`), the component id last.
STATE_COLUMNS = (
    "status",
    "status_since",
    "consecutive_failures",
    "consecutive_successes",
    "recent_outcomes",
    "grace_until",
    "current_incident_id",
    "last_check_at",
    "last_outcome",
    "last_detail",
    "last_latency_ms",
    "updated_at",
    "component_id",
)
# (result columns) one tuple per result: component id, observed at (aware), outcome, latency ms, detail
ResultRow = tuple[int, datetime, str, float | None, str]


class SQLiteRows:
    name = "sqlite"
    _TS = "%Y-%m-%d %H:%M:%S.%f"
    _INSERT = f"INSERT INTO check_results ({', '.join(RESULT_COLUMNS)}) VALUES (?, ?, ?, ?, ?)"
    _UPDATE = (
        "UPDATE component_states SET "
        + ", ".join(f"{c} = ?" for c in STATE_COLUMNS[:-1])
        + " WHERE component_id = ?"
    )
    _SEQ = "SELECT seq FROM sqlite_sequence WHERE name = 'check_results'"
    _TIME_COLUMNS = tuple(
        i
        for i, c in enumerate(STATE_COLUMNS)
        if c in ("status_since", "grace_until", "last_check_at", "updated_at")
    )

    def __init__(self) -> None:
        # datetime -> its text: a result's time is written twice (its row, its component's
        # `last_check_at`), a status' start once per flush for as long as it lasts, and a flush's
        # `updated_at` once per state row. Cleared when it grows past `_TS_KEPT`.
        self._texts: dict[datetime, str] = {}

    _TS_KEPT = 100_000

    def _ts(self, value: datetime | None) -> str | None:
        if value is None:
            return None
        text = self._texts.get(value)
        if text is not None:
            return text
        if value.tzinfo is not UTC:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column; use datetime.now(UTC)")
            value = value.astimezone(UTC)
        texts = self._texts
        if len(texts) >= self._TS_KEPT:
            texts.clear()
        text = texts[value] = value.strftime(self._TS)
        return text

    async def insert_results(self, session: AsyncSession, rows: Sequence[ResultRow]) -> list[int]:
        conn = await session.connection()
        ts = self._ts
        await conn.exec_driver_sql(
            self._INSERT,
            [(cid, ts(at), outcome, latency, detail) for cid, at, outcome, latency, detail in rows],
        )
        last = (await conn.exec_driver_sql(self._SEQ)).scalar_one()
        return list(range(last - len(rows) + 1, last + 1))

    def prepare_states(self, rows: Sequence[tuple[Any, ...]]) -> list[Any]:
        """The state rows as the driver takes them (no I/O: done before the flush's first write, so
        SQLite's write lock is not held for it)."""
        ts, times = self._ts, self._TIME_COLUMNS
        prepared = []
        for state_row in rows:
            row = list(state_row)
            for i in times:
                row[i] = ts(row[i])
            prepared.append(tuple(row))
        return prepared

    async def write_states(self, session: AsyncSession, prepared: list[Any]) -> None:
        conn = await session.connection()
        await conn.exec_driver_sql(self._UPDATE, prepared)

    async def update_states(self, session: AsyncSession, rows: Sequence[tuple[Any, ...]]) -> None:
        await self.write_states(session, self.prepare_states(rows))


class PostgresRows:
    name = "postgresql"
    _IDS = "SELECT nextval(pg_get_serial_sequence('check_results', 'id')) FROM generate_series(1, $1)"
    # A small batch in one statement: each row's id is taken from the sequence in a materialized CTE
    # and returned in the rows' order (WITH ORDINALITY), the rows inserted by a data-modifying CTE.
    _INSERT_SMALL = (
        "WITH r AS MATERIALIZED (SELECT nextval(pg_get_serial_sequence('check_results', 'id')) AS id, u.* "
        "FROM unnest($1::int[], $2::timestamptz[], $3::text[], $4::float8[], $5::text[]) WITH ORDINALITY "
        f"AS u({', '.join(RESULT_COLUMNS)}, ord)), "
        f"ins AS (INSERT INTO check_results (id, {', '.join(RESULT_COLUMNS)}) "
        f"SELECT id, {', '.join(RESULT_COLUMNS)} FROM r) "
        "SELECT id FROM r ORDER BY ord"
    )
    _UPDATE = (
        "UPDATE component_states AS s SET status = u.status, status_since = u.status_since, "
        "consecutive_failures = u.consecutive_failures, consecutive_successes = u.consecutive_successes, "
        "recent_outcomes = u.recent_outcomes, grace_until = u.grace_until, "
        "current_incident_id = u.current_incident_id, last_check_at = u.last_check_at, "
        "last_outcome = u.last_outcome, last_detail = u.last_detail, last_latency_ms = u.last_latency_ms, "
        "updated_at = u.updated_at "
        "FROM unnest($1::text[], $2::timestamptz[], $3::int[], $4::int[], $5::text[], $6::timestamptz[], "
        "$7::int[], $8::timestamptz[], $9::text[], $10::text[], $11::float8[], $12::timestamptz[], "
        "$13::int[]) "
        f"AS u({', '.join(STATE_COLUMNS)}) WHERE s.component_id = u.component_id"
    )

    async def _raw(self, session: AsyncSession) -> Any:
        return await driver_connection(session)

    async def insert_results(self, session: AsyncSession, rows: Sequence[ResultRow]) -> list[int]:
        raw = await self._raw(session)
        if len(rows) <= SMALL_BATCH:
            # A decisive result's flush (a few rows) is on the reaction's path: one round trip.
            columns = [list(column) for column in zip(*rows, strict=True)]
            return [r[0] for r in await raw.fetch(self._INSERT_SMALL, *columns)]
        ids = sorted(r[0] for r in await raw.fetch(self._IDS, len(rows)))
        await raw.copy_records_to_table(
            "check_results",
            columns=("id", *RESULT_COLUMNS),
            records=[(rid, *row) for rid, row in zip(ids, rows, strict=True)],
        )
        return ids

    def prepare_states(self, rows: Sequence[tuple[Any, ...]]) -> list[Any]:
        """The state rows as the arrays of the UPDATE (no I/O)."""
        return [list(column) for column in zip(*rows, strict=True)]

    async def write_states(self, session: AsyncSession, prepared: list[Any]) -> None:
        raw = await self._raw(session)
        await raw.execute(self._UPDATE, *prepared)

    async def update_states(self, session: AsyncSession, rows: Sequence[tuple[Any, ...]]) -> None:
        await self.write_states(session, self.prepare_states(rows))


def rows_for(dialect_name: str) -> SQLiteRows | PostgresRows:
    """The one place the dialect is chosen."""
    return PostgresRows() if dialect_name == "postgresql" else SQLiteRows()
