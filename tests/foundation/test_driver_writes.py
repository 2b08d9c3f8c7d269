"""Rows written through the driver (COPY and array statements on Postgres, executemany on SQLite)
belong to the session's transaction: a transaction that fails after them leaves none behind, so a
retried flush or a failed ingest request never stores them twice. Both dialects."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from app.db.models import CheckResultRecord, Component, metric_points
from app.db.session import session_scope
from app.metrics.repository import MetricsRepository
from app.metrics.validation import check_points
from app.monitoring.result_rows import rows_for


class Failed(Exception):
    pass


async def count(guard, table) -> int:
    async with guard.session() as s:
        return (await s.execute(select(func.count()).select_from(table))).scalar_one()


async def test_points_written_first_roll_back_with_the_transaction(guard):
    now = datetime.now(UTC)
    batch = check_points(
        [
            {"component": "etl", "metric_name": "rows", "value": float(i), "timestamp": now.isoformat()}
            for i in range(5)
        ]
    )
    with pytest.raises(Failed):
        async with session_scope(guard.runtime.sessionmaker) as session:
            await MetricsRepository(session).store(batch)  # the transaction's first statements
            raise Failed
    assert await count(guard, metric_points) == 0


async def test_check_results_written_first_roll_back_with_the_transaction(guard):
    async with session_scope(guard.runtime.sessionmaker) as session:
        component = Component(name="etl")
        session.add(component)
        await session.flush()
        component_id = component.id
    with pytest.raises(Failed):
        async with session_scope(guard.runtime.sessionmaker) as session:
            rows = rows_for(session.get_bind().dialect.name)
            await rows.insert_results(session, [(component_id, datetime.now(UTC), "success", 1.0, "ok")])
            raise Failed
    assert await count(guard, CheckResultRecord) == 0


async def test_a_few_check_results_go_in_with_one_statement_ids_in_row_order(guard):
    """Postgres: a decisive result's flush writes a row or two, and the reaction waits for it: they go
    in with one statement (not a sequence read and a COPY), each id returned beside its own row.
    A large batch still goes through the sequence and COPY, with the same id order."""
    from app.db.session import driver_connection
    from app.monitoring.result_rows import SMALL_BATCH

    async with session_scope(guard.runtime.sessionmaker) as session:
        components = [Component(name=f"etl-{i}") for i in range(3)]
        session.add_all(components)
        await session.flush()
        ids = [c.id for c in components]
    if guard.runtime.engine.dialect.name != "postgresql":
        pytest.skip("Postgres: each statement is a round trip to the server")
    now = datetime.now(UTC)
    for size in (3, SMALL_BATCH + 5):
        rows = [(ids[i % 3], now, "success", float(i), f"r{i}") for i in range(size)]
        queries: list[str] = []
        async with session_scope(guard.runtime.sessionmaker) as session:
            raw = await driver_connection(session)

            def note(logged, queries=queries) -> None:
                queries.append(logged.query)

            raw.add_query_logger(note)
            try:
                written = await rows_for("postgresql").insert_results(session, rows)
            finally:
                raw.remove_query_logger(note)
        assert written == sorted(written) and len(set(written)) == size
        if size == 3:
            # (asyncpg's one-off type introspection on a fresh connection aside)
            sent = [q for q in queries if "jit" not in q and "typeinfo" not in q]
            assert len(sent) == 1 and "INSERT INTO check_results" in sent[0], sent
        async with guard.session() as s:
            stored = dict(
                (
                    await s.execute(
                        select(CheckResultRecord.id, CheckResultRecord.detail).where(
                            CheckResultRecord.id.in_(written)
                        )
                    )
                ).all()
            )
        assert [stored[i] for i in written] == [f"r{i}" for i in range(size)]
