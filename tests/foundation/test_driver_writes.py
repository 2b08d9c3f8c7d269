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
