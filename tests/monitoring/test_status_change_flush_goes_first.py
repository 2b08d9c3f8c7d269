"""A result that changes a status is a reaction: on SQLite the flush that writes it goes before
routine writers queued at the engine's write gate (``app/db/write_gate.py``), since its commit hands
the incident to healing; a flush of steady results keeps its turn. Postgres has no gate (its writers
wait on row locks only), so these orderings are SQLite's."""

from __future__ import annotations

import asyncio
import shutil

import pytest
from sqlalchemy import text

from app.checks.base import CheckResult, Outcome
from app.db.engine import write_gate
from app.db.session import session_scope
from app.monitoring.recorder import Observation
from tests.monitoring.conftest import add_component, mon_settings, monitored

WAIT = 30  # a bound for things that must happen, never a speed claim


@pytest.fixture
def sqlite_url(tmp_path, sqlite_template) -> str:
    path = tmp_path / "guard.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


async def until(predicate) -> None:
    async with asyncio.timeout(WAIT):
        while not predicate():
            await asyncio.sleep(0.005)


async def results_stored(sessions) -> int:
    async with session_scope(sessions) as session:
        return (await session.execute(text("SELECT COUNT(*) FROM check_results"))).scalar_one()


async def flush_behind_a_routine_writer(guard, scheduler, result: CheckResult) -> int:
    """With the gate held and a routine writer queued, buffer one result and flush it; returns how
    many stored results the routine writer saw once it had the lock (the flush went first: all)."""
    sessions = guard.runtime.sessionmaker
    gate = write_gate(guard.runtime.engine)
    cid = next(iter(scheduler.tracked))
    release, seen = asyncio.Event(), []
    waits = gate.waits

    async def holder() -> None:
        async with session_scope(sessions) as session:
            await session.execute(text("INSERT INTO gate_log VALUES (0)"))
            await release.wait()

    async def routine() -> None:  # a lease tick, a delivery... that asked for the lock first
        async with session_scope(sessions) as session:
            await session.execute(text("INSERT INTO gate_log VALUES (1)"))
            seen.append((await session.execute(text("SELECT COUNT(*) FROM check_results"))).scalar_one())

    held = asyncio.create_task(holder())
    await until(lambda: gate.held)
    queued = asyncio.create_task(routine())
    await until(lambda: gate.waits == waits + 1)
    scheduler.writer.add(Observation(cid, "http", result))
    flush = asyncio.create_task(scheduler.writer.flush())
    await until(lambda: gate.waits == waits + 2)
    release.set()
    await asyncio.wait_for(asyncio.gather(held, queued, flush), WAIT)
    return seen[0]


async def test_a_status_change_is_flushed_before_routine_writers(sqlite_url, tmp_path, http_target):
    async with monitored(mon_settings(sqlite_url, tmp_path)) as (guard, scheduler):
        async with guard.runtime.engine.begin() as conn:
            await conn.execute(text("CREATE TABLE gate_log (n INTEGER)"))
        await add_component(guard, "svc", {"kind": "http", "url": http_target.url("/ok")})
        await scheduler.refresh()
        cid = next(iter(scheduler.tracked))
        scheduler.writer.add(Observation(cid, "http", CheckResult.up("first")))
        await scheduler.writer.flush()  # unknown -> healthy: nothing reacts to it
        assert await results_stored(guard.runtime.sessionmaker) == 1

        # A steady success, and a first failure (failure_threshold 2), keep their turn: the routine
        # writer that came first commits first.
        assert await flush_behind_a_routine_writer(guard, scheduler, CheckResult.up("steady")) == 1
        failed = CheckResult(Outcome.DOWN, None, "HTTP 503")
        assert await flush_behind_a_routine_writer(guard, scheduler, failed) == 2
        assert scheduler.status_of(cid) == "healthy"
        # The second failure turns it unhealthy: that flush goes first.
        assert await flush_behind_a_routine_writer(guard, scheduler, failed) == 4
        assert scheduler.status_of(cid) not in ("healthy", "unknown")
        # Written: the next failure (no change) keeps its turn again.
        assert await flush_behind_a_routine_writer(guard, scheduler, failed) == 4
