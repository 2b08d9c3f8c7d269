"""On SQLite the flush that opens an incident (its results, the incident, the transition, the alert
with its outbox rows, healing's incident, in one commit) holds the database's one write lock for its
own work: no statement under the lock waits for a trip to the driver's thread and back (a round of
a busy event loop each), which the reaction's next writer, the healing claim, would wait for."""

from __future__ import annotations

import aiosqlite
import pytest
from sqlalchemy import func, select

from app.checks.base import CheckResult, Outcome
from app.db.models import Alert, Incident
from app.db.models.healing import HealingIncident
from app.monitoring.tracked import Observation
from tests.monitoring.conftest import add_component, mon_settings, monitored


async def test_the_flush_that_opens_an_incident_makes_no_trip_under_the_write_lock(
    db_url, tmp_path, monkeypatch
):
    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite's one write lock and its driver's thread")
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        await add_component(guard, "victim", {"kind": "http", "url": "http://127.0.0.1:9/ok"})
        await scheduler.refresh()
        (victim,) = [cid for cid, t in scheduler.tracked.items() if t.name == "victim"]
        writer = scheduler.writer
        writer.add(Observation(victim, "http", CheckResult.up("first")))
        await writer.flush_all()

        under_lock: list[str] = []
        execute = aiosqlite.Connection._execute

        async def counted(self, fn, *args, **kwargs):
            if self._connection is not None and self._connection.in_transaction:
                under_lock.append(getattr(fn, "__name__", "?"))
            return await execute(self, fn, *args, **kwargs)

        monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
        writer.add(Observation(victim, "http", CheckResult(Outcome.DOWN, None, "broken", conclusive=True)))
        await writer.flush_all()
        monkeypatch.undo()

        assert scheduler.status_of(victim) == "critical"
        async with guard.session() as session:
            for counted_rows in (
                select(func.count()).where(Incident.component_id == victim),
                select(func.count()).where(Alert.component == "victim"),
                select(func.count()).where(HealingIncident.component == "victim"),
            ):
                assert (await session.execute(counted_rows)).scalar_one() == 1
        assert under_lock == ["commit"]
