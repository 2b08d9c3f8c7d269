"""On SQLite the decision on a handed-over incident (its claim and acting marker) goes before routine
writers queued at the engine's write gate (``app/db/write_gate.py``), and no writer comes in between
the claim's commit and the marker's: a reaction does not wait for them. The periodic pass's decisions
keep their turn. Postgres has no gate (row locks only)."""

from __future__ import annotations

import asyncio
import shutil

import pytest
from sqlalchemy import text

from app.db.engine import write_gate
from app.db.session import session_scope
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


async def attempts_seen_by_a_routine_writer(h, decide) -> int:
    """With the gate held and a routine writer queued, run `decide`; returns how many attempts marked
    acting the routine writer saw once it had the lock (the claim and its marker went first: one)."""
    runtime = h.runtime
    sessions, gate = runtime.sessionmaker, write_gate(runtime.engine)
    release, seen = asyncio.Event(), []
    waits = gate.waits

    async def holder() -> None:
        async with session_scope(sessions) as session:
            await session.execute(text("INSERT INTO gate_log VALUES (0)"))
            await release.wait()

    async def routine() -> None:  # a delivery, a lease tick... that asked for the lock first
        async with session_scope(sessions) as session:
            await session.execute(text("INSERT INTO gate_log VALUES (1)"))
            marked = text("SELECT COUNT(*) FROM healing_attempts WHERE acting_at IS NOT NULL")
            seen.append((await session.execute(marked)).scalar_one())

    held = asyncio.create_task(holder())
    await until(lambda: gate.held)
    queued = asyncio.create_task(routine())
    await until(lambda: gate.waits == waits + 1)
    decision = asyncio.create_task(decide())
    await until(lambda: gate.waits == waits + 2)
    release.set()
    started = await asyncio.wait_for(decision, WAIT)
    await asyncio.wait_for(asyncio.gather(held, queued), WAIT)
    assert len(started) == 1
    return seen[0]


@pytest.mark.parametrize("hand_over", [True, False], ids=["hand-over", "periodic pass"])
async def test_a_hand_over_is_decided_before_routine_writers(sqlite_url, tmp_path, hand_over):
    marker = tmp_path / "ran"
    async with healing_guard(sqlite_url, tmp_path) as h:
        await h.add_component("w", {"strategies": [{"kind": "restart", "argv": touch_argv(marker)}]})
        incident_id = await h.open_incident("w")
        async with h.runtime.engine.begin() as conn:
            await conn.execute(text("CREATE TABLE gate_log (n INTEGER)"))
        if hand_over:  # as the wake-up loop does
            seen = await attempts_seen_by_a_routine_writer(h, lambda: h.engine.react([incident_id]))
            assert seen == 1  # the claim and its marker were committed before the routine writer wrote
        else:
            seen = await attempts_seen_by_a_routine_writer(h, lambda: h.engine.decide_each([incident_id]))
            assert seen == 0  # the routine writer came first
        await h.engine.drain(timeout=WAIT)
        await wait_until(lambda: count_lines(marker) == 1, WAIT)
        assert [a.state for a in await h.attempts()] in (["verifying"], ["succeeded"])
