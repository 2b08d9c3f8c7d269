"""The SQLite writer gate (``app/db/write_gate.py``): writers of the process take SQLite's write lock
in the order they asked for it, and every way a transaction can end gives the gate back. SQLite
only: Postgres has row locks and no gate."""

from __future__ import annotations

import asyncio
import shutil

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from app.api.deps import SessionDep
from app.db.engine import create_engine, create_sessionmaker
from app.db.session import hold_write_lock, session_scope
from app.db.write_gate import reaction_writes, write_gate_of
from tests.conftest import make_settings, running_guard

WAIT = 30  # a bound for things that must happen, never a speed claim


@pytest.fixture
def sqlite_url(tmp_path, sqlite_template) -> str:
    path = tmp_path / "guard.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
async def db(sqlite_url, tmp_path):
    engine = create_engine(make_settings(sqlite_url, tmp_path))
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE gate_log (n INTEGER)"))
    try:
        yield engine, create_sessionmaker(engine), write_gate_of(engine.sync_engine)
    finally:
        await engine.dispose()


async def until(predicate) -> None:
    async with asyncio.timeout(WAIT):
        while not predicate():
            await asyncio.sleep(0.005)


def free(gate) -> bool:
    return gate.holder is None and not gate.held and gate.queued == 0


async def insert(sessions, n: int) -> None:
    async with session_scope(sessions) as session:
        await session.execute(text("INSERT INTO gate_log VALUES (:n)"), {"n": n})


async def logged(sessions) -> list[int]:
    async with sessions() as session:
        return list((await session.execute(text("SELECT n FROM gate_log ORDER BY rowid"))).scalars())


async def test_writers_take_the_lock_in_the_order_they_asked(db):
    _engine, sessions, gate = db
    release = asyncio.Event()

    async def holder() -> None:
        async with session_scope(sessions) as session:
            await session.execute(text("INSERT INTO gate_log VALUES (0)"))
            await release.wait()

    held = asyncio.create_task(holder())
    await until(lambda: gate.holder is not None)
    writers = []
    for n in range(1, 9):
        writers.append(asyncio.create_task(insert(sessions, n)))
        await until(lambda n=n: gate.queued == n)  # queued behind the ones before it
    release.set()
    await asyncio.wait_for(asyncio.gather(held, *writers), WAIT)
    assert await logged(sessions) == list(range(9))
    assert free(gate)


async def test_a_reaction_goes_before_routine_writers_that_came_first(db):
    _engine, sessions, gate = db
    release = asyncio.Event()

    async def holder() -> None:
        async with session_scope(sessions) as session:
            await session.execute(text("INSERT INTO gate_log VALUES (0)"))
            await release.wait()

    async def reacting(n: int) -> None:
        with reaction_writes():
            await insert(sessions, n)

    held = asyncio.create_task(holder())
    await until(lambda: gate.holder is not None)
    tasks = []
    for n, writer in ((1, insert), (2, insert), (3, reacting), (4, insert), (5, reacting)):
        tasks.append(asyncio.create_task(writer(sessions, n) if writer is insert else writer(n)))
        await until(lambda n=n: gate.queued == n)
    release.set()
    await asyncio.wait_for(asyncio.gather(held, *tasks), WAIT)
    assert await logged(sessions) == [0, 3, 5, 1, 2, 4]  # reactions first, each kind in its order
    assert free(gate)


async def test_a_decision_under_hold_write_lock_holds_the_gate_until_it_commits(db):
    _engine, sessions, gate = db
    async with session_scope(sessions) as deciding:
        await hold_write_lock(deciding)
        assert gate.holder is not None
        writer = asyncio.create_task(insert(sessions, 1))
        await until(lambda: gate.queued == 1)
        # A reader never takes the gate (WAL): it reads beside the holder and the queued writer.
        async with sessions() as reader:
            assert await asyncio.wait_for(reader.scalar(text("SELECT COUNT(*) FROM gate_log")), WAIT) == 0
        await deciding.execute(text("INSERT INTO gate_log VALUES (0)"))  # holds it already: no wait
    await asyncio.wait_for(writer, WAIT)
    assert await logged(sessions) == [0, 1]
    assert free(gate)


async def test_a_write_inside_a_first_savepoint_queues_at_the_gate(db):
    _engine, sessions, gate = db
    release = asyncio.Event()

    async def holder() -> None:
        async with session_scope(sessions) as session:
            await session.execute(text("INSERT INTO gate_log VALUES (0)"))
            await release.wait()

    async def nested() -> None:  # as ``begin_nested()`` around an insert that may conflict
        async with session_scope(sessions) as session, session.begin_nested():
            await session.execute(text("INSERT INTO gate_log VALUES (1)"))

    held = asyncio.create_task(holder())
    await until(lambda: gate.holder is not None)
    task = asyncio.create_task(nested())
    await until(lambda: gate.queued == 1)  # not in SQLite's busy handler, ungated
    release.set()
    await asyncio.wait_for(asyncio.gather(held, task), WAIT)
    assert await logged(sessions) == [0, 1]
    assert free(gate)


async def test_a_rollback_gives_the_gate_back(db):
    _engine, sessions, gate = db
    with pytest.raises(RuntimeError):
        async with session_scope(sessions) as session:
            await session.execute(text("INSERT INTO gate_log VALUES (1)"))
            assert gate.holder is not None
            raise RuntimeError("the handler failed")
    assert free(gate)
    await asyncio.wait_for(insert(sessions, 2), WAIT)
    assert await logged(sessions) == [2]
    assert free(gate)


async def test_a_failed_write_statement_gives_the_gate_back(db):
    _engine, sessions, gate = db
    with pytest.raises(OperationalError):
        async with session_scope(sessions) as session:
            await session.execute(text("INSERT INTO no_such_table VALUES (1)"))
    assert free(gate)
    await asyncio.wait_for(insert(sessions, 1), WAIT)
    assert free(gate)


async def test_a_task_cancelled_while_holding_gives_the_gate_back(db):
    _engine, sessions, gate = db
    wrote = asyncio.Event()

    async def stuck() -> None:
        async with session_scope(sessions) as session:
            await session.execute(text("INSERT INTO gate_log VALUES (1)"))
            wrote.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(stuck())
    await asyncio.wait_for(wrote.wait(), WAIT)
    waiting = asyncio.create_task(insert(sessions, 2))
    await until(lambda: gate.queued == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(waiting, WAIT)  # the queued writer got it
    assert await logged(sessions) == [2]  # the cancelled transaction was rolled back
    assert free(gate)


async def test_a_writer_cancelled_while_queued_does_not_block_the_next(db):
    _engine, sessions, gate = db
    release = asyncio.Event()

    async def holder() -> None:
        async with session_scope(sessions) as session:
            await session.execute(text("INSERT INTO gate_log VALUES (0)"))
            await release.wait()

    held = asyncio.create_task(holder())
    await until(lambda: gate.holder is not None)
    cancelled = asyncio.create_task(insert(sessions, 1))
    await until(lambda: gate.queued == 1)
    after = asyncio.create_task(insert(sessions, 2))
    await until(lambda: gate.queued == 2)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    release.set()
    await asyncio.wait_for(asyncio.gather(held, after), WAIT)
    assert await logged(sessions) == [0, 2]
    assert free(gate)


async def test_ddl_outside_a_transaction_gives_the_gate_back_at_once(db):
    engine, sessions, gate = db
    async with engine.connect() as conn:
        await conn.execute(text("CREATE TABLE gate_other (n INTEGER)"))
        assert free(gate)  # autocommitted: SQLite's lock is already free, so is the gate
        await asyncio.wait_for(insert(sessions, 1), WAIT)
        await conn.rollback()
    assert free(gate)


async def test_the_wait_is_bounded_by_the_busy_timeout_then_sqlite_decides(sqlite_url, tmp_path):
    engine = create_engine(make_settings(sqlite_url, tmp_path, database={"statement_timeout": 0.3}))
    sessions, gate = create_sessionmaker(engine), write_gate_of(engine.sync_engine)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE gate_log (n INTEGER)"))
        async with session_scope(sessions) as holding:
            await hold_write_lock(holding)
            # Another writer of this process stuck behind a holder that never commits: it gives up
            # waiting for the gate, then SQLite's busy handler gives up too, as before the gate.
            with pytest.raises(OperationalError, match="locked"):
                async with session_scope(sessions) as other:
                    await other.execute(text("INSERT INTO gate_log VALUES (1)"))
            assert gate.bypassed == 1
            assert gate.holder is not None
        assert free(gate)
    finally:
        await engine.dispose()


async def test_a_request_cancelled_mid_transaction_gives_the_gate_back(sqlite_url, tmp_path):
    wrote = asyncio.Event()

    def add_route(app: FastAPI) -> None:
        @app.post("/gate-test")
        async def hold(session: SessionDep) -> dict:
            await session.execute(text("INSERT INTO gate_log VALUES (1)"))
            wrote.set()
            await asyncio.Event().wait()
            return {}

    async with running_guard(make_settings(sqlite_url, tmp_path), app_hook=add_route) as guard:
        runtime = guard.app.state.runtime
        gate = write_gate_of(runtime.engine.sync_engine)
        async with runtime.engine.begin() as conn:
            await conn.execute(text("CREATE TABLE gate_log (n INTEGER)"))
        request = asyncio.create_task(guard.client.post("/gate-test"))
        await asyncio.wait_for(wrote.wait(), WAIT)
        assert gate.holder is not None
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        assert free(gate)
        await asyncio.wait_for(insert(runtime.sessionmaker, 2), WAIT)  # the next writer is not stuck
        assert await logged(runtime.sessionmaker) == [2]  # the cancelled request's row was rolled back
        assert free(gate)
