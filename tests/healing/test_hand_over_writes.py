"""On SQLite the decision on a handed-over incident (its claim and acting marker) goes before routine
writers queued at the writer gate (``app/db/write_gate.py``): a reaction does not wait for them."""

from __future__ import annotations

import asyncio
import shutil

import pytest
from sqlalchemy import text

from app.db.session import session_scope
from app.db.write_gate import write_gate_of
from tests.healing.conftest import count_lines, healing_guard, touch_argv, wait_until

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


async def test_a_hand_over_is_decided_before_routine_writers(sqlite_url, tmp_path):
    marker = tmp_path / "ran"
    async with healing_guard(sqlite_url, tmp_path) as h:
        await h.add_component("w", {"strategies": [{"kind": "restart", "argv": touch_argv(marker)}]})
        incident_id = await h.open_incident("w")
        runtime = h.runtime
        sessions, gate = runtime.sessionmaker, write_gate_of(runtime.engine.sync_engine)
        async with runtime.engine.begin() as conn:
            await conn.execute(text("CREATE TABLE gate_log (n INTEGER)"))
        release, seen = asyncio.Event(), []

        async def holder() -> None:
            async with session_scope(sessions) as session:
                await session.execute(text("INSERT INTO gate_log VALUES (0)"))
                await release.wait()

        async def routine() -> None:  # a delivery, a periodic pass... that asked for the lock first
            async with session_scope(sessions) as session:
                await session.execute(text("INSERT INTO gate_log VALUES (1)"))
                seen.append(
                    (await session.execute(text("SELECT COUNT(*) FROM healing_attempts"))).scalar_one()
                )

        held = asyncio.create_task(holder())
        await until(lambda: gate.holder is not None)
        queued = asyncio.create_task(routine())
        await until(lambda: gate.queued == 1)
        reaction = asyncio.create_task(h.engine.react([incident_id]))  # as the wake-up loop does
        await until(lambda: gate.queued == 2)
        release.set()
        started = await asyncio.wait_for(reaction, WAIT)
        await asyncio.wait_for(asyncio.gather(held, queued), WAIT)
        assert len(started) == 1
        assert seen == [1]  # the claim was committed before the routine writer had the lock
        await h.engine.drain(timeout=WAIT)
        await wait_until(lambda: count_lines(marker) == 1, WAIT)
        assert [a.state for a in await h.attempts()] in (["verifying"], ["succeeded"])
