"""The SQLite engine's write gate (app/db/write_gate.py): the writers of one process are served in
order, one at a time, each as soon as the previous one's transaction ended; reads never queue; a
held gate ends in SQLite's own "database is locked" after the busy timeout (a nested writer in one
task included); another process still meets SQLite's lock. Postgres has no gate: its writers wait
on row locks, and a nested session writing other rows goes through."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from sqlalchemy import exc, text

from app.db.engine import create_engine, create_sessionmaker, write_gate
from app.db.session import hold_write_lock, session_scope
from app.db.write_gate import takes_write_lock
from tests.conftest import make_settings


def _sqlite(db_url: str) -> bool:
    return db_url.startswith("sqlite")


async def _engine(db_url, tmp_path, **database):
    engine = create_engine(
        make_settings(db_url, tmp_path, database=database) if database else make_settings(db_url, tmp_path)
    )
    key = "INTEGER PRIMARY KEY AUTOINCREMENT" if _sqlite(db_url) else "SERIAL PRIMARY KEY"
    async with engine.begin() as conn:
        await conn.execute(text("DROP TABLE IF EXISTS gate_probe"))
        await conn.execute(text(f"CREATE TABLE gate_probe (id {key}, who TEXT UNIQUE)"))
    return engine


async def _dispose(engine) -> None:
    """The probe table goes (the database is shared by the next tests, which compare the schema)."""
    async with engine.begin() as conn:
        await conn.execute(text("DROP TABLE IF EXISTS gate_probe"))
    await engine.dispose()


async def _queued(gate, count: int) -> None:
    """Until the writer reached the gate and waits in its queue (pacing only: at most ~2 s)."""
    for _ in range(200):
        if gate.waits >= count:
            return
        await asyncio.sleep(0.01)


def test_what_takes_the_write_lock():
    for statement in (
        "INSERT INTO t VALUES (1)",
        "  update t set a = 1",
        "DELETE FROM t",
        "REPLACE INTO t VALUES (1)",
        "BEGIN IMMEDIATE",
        "begin exclusive",
        "CREATE TABLE x (a int)",
        "-- why\n/* what */ INSERT INTO t VALUES (1)",
        "WITH c AS (SELECT 1) INSERT INTO t SELECT * FROM c",
    ):
        assert takes_write_lock(statement), statement
    for statement in (
        "SELECT * FROM t",
        "BEGIN",
        "SAVEPOINT sa_1",
        "RELEASE SAVEPOINT sa_1",
        "PRAGMA foreign_keys",
        "WITH c AS (SELECT 1) SELECT * FROM c",
        "SELECT updated_at FROM t",
    ):
        assert not takes_write_lock(statement), statement


async def test_writers_are_served_in_the_order_they_came(db_url, tmp_path):
    if not _sqlite(db_url):
        engine = create_engine(make_settings(db_url, tmp_path))
        assert write_gate(engine) is None  # Postgres: row locks, no gate
        await engine.dispose()
        return
    engine = await _engine(db_url, tmp_path)
    sessions = create_sessionmaker(engine)
    gate = write_gate(engine)
    assert gate is not None
    try:
        names = [f"w{i}" for i in range(6)]

        async def writer(name: str) -> None:
            async with session_scope(sessions) as session:
                await session.execute(text("INSERT INTO gate_probe (who) VALUES (:w)"), {"w": name})

        tasks = []
        async with session_scope(sessions) as holder:
            await holder.execute(text("INSERT INTO gate_probe (who) VALUES ('holder')"))
            for number, name in enumerate(names, start=1):
                tasks.append(asyncio.create_task(writer(name)))
                await _queued(gate, number)
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        async with session_scope(sessions) as session:
            rows = (await session.execute(text("SELECT who FROM gate_probe ORDER BY id"))).scalars().all()
        assert rows == ["holder", *names]
        assert not gate.held
    finally:
        await _dispose(engine)


async def test_a_read_only_session_never_takes_the_gate(db_url, tmp_path):
    engine = await _engine(db_url, tmp_path)
    sessions = create_sessionmaker(engine)
    gate = write_gate(engine)
    try:
        async with session_scope(sessions) as writer:
            await writer.execute(text("INSERT INTO gate_probe (who) VALUES ('w')"))
            # Beside an open write transaction a reader runs at once (WAL / MVCC): it never queues.
            async with session_scope(sessions) as reader:
                seen = (await reader.execute(text("SELECT count(*) FROM gate_probe"))).scalar_one()
                await reader.execute(text("SELECT 1"))
            assert seen == 0
            if gate is not None:
                assert gate.waits == 0 and gate.held
        if gate is not None:
            assert not gate.held  # given back at the writer's commit
    finally:
        await _dispose(engine)


async def test_a_nested_writer_times_out_with_sqlites_error_and_frees_nothing_it_did_not_take(
    db_url, tmp_path
):
    """A task holding a write transaction opens another session that writes: on SQLite both wait for
    the same writer, so it ends after the busy timeout with "database is locked" — the gate's error
    is SQLite's own (compared with what another process's lock gives). On Postgres the nested
    session writes another row and goes through."""
    engine = await _engine(db_url, tmp_path, statement_timeout=0.5)
    sessions = create_sessionmaker(engine)
    try:
        async with session_scope(sessions) as outer:
            await outer.execute(text("INSERT INTO gate_probe (who) VALUES ('outer')"))
            if _sqlite(db_url):
                with pytest.raises(exc.OperationalError) as gated:
                    async with session_scope(sessions) as inner:
                        await inner.execute(text("INSERT INTO gate_probe (who) VALUES ('inner')"))
                assert "database is locked" in str(gated.value.orig)
            else:
                async with session_scope(sessions) as inner:
                    await inner.execute(text("INSERT INTO gate_probe (who) VALUES ('inner')"))
        async with session_scope(sessions) as after:  # nothing leaked: the next writer goes through
            await after.execute(text("INSERT INTO gate_probe (who) VALUES ('after')"))
        if not _sqlite(db_url):
            return
        gate = write_gate(engine)
        assert gate is not None and not gate.held
        # Another process holds SQLite's lock: the gate is free, the busy handler decides, same error.
        path = engine.url.database
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(exc.OperationalError) as busy:
                async with session_scope(sessions) as session:
                    await session.execute(text("INSERT INTO gate_probe (who) VALUES ('busy')"))
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert type(busy.value.orig) is type(gated.value.orig)
        assert str(busy.value.orig) == str(gated.value.orig)
        assert not gate.held
    finally:
        await _dispose(engine)


async def test_another_process_still_meets_sqlites_lock(db_url, tmp_path):
    """The gate orders this process's writers only: a writer of another process holding the lock is
    waited for by SQLite's busy handler, and the writer then goes through."""
    if not _sqlite(db_url):
        pytest.skip("SQLite's file lock")
    engine = await _engine(db_url, tmp_path)
    sessions = create_sessionmaker(engine)
    other = sqlite3.connect(engine.url.database, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO gate_probe (who) VALUES ('other')")

        async def write() -> None:
            async with session_scope(sessions) as session:
                await hold_write_lock(session)
                await session.execute(text("INSERT INTO gate_probe (who) VALUES ('mine')"))

        task = asyncio.create_task(write())
        await asyncio.sleep(0.2)
        assert not task.done()  # held by the other process's transaction
        other.execute("COMMIT")
        await asyncio.wait_for(task, 30)
        async with session_scope(sessions) as session:
            rows = (await session.execute(text("SELECT who FROM gate_probe ORDER BY id"))).scalars().all()
        assert rows == ["other", "mine"]
    finally:
        other.close()
        await _dispose(engine)


async def test_a_failed_write_gives_the_gate_back(db_url, tmp_path):
    engine = await _engine(db_url, tmp_path)
    sessions = create_sessionmaker(engine)
    gate = write_gate(engine)
    try:
        async with session_scope(sessions) as session:
            await session.execute(text("INSERT INTO gate_probe (who) VALUES ('x')"))
        with pytest.raises(exc.IntegrityError):
            async with session_scope(sessions) as session:
                await session.execute(text("INSERT INTO gate_probe (who) VALUES ('x')"))
        if gate is not None:
            assert not gate.held
        async with session_scope(sessions) as session:
            await session.execute(text("INSERT INTO gate_probe (who) VALUES ('y')"))
    finally:
        await _dispose(engine)


async def test_a_writer_cancelled_in_the_queue_takes_nothing(db_url, tmp_path):
    if not _sqlite(db_url):
        pytest.skip("the gate is SQLite's")
    engine = await _engine(db_url, tmp_path)
    sessions = create_sessionmaker(engine)
    gate = write_gate(engine)
    assert gate is not None
    try:

        async def write(who: str) -> None:
            async with session_scope(sessions) as session:
                await session.execute(text("INSERT INTO gate_probe (who) VALUES (:w)"), {"w": who})

        async with session_scope(sessions) as holder:
            await holder.execute(text("INSERT INTO gate_probe (who) VALUES ('holder')"))
            cancelled = asyncio.create_task(write("cancelled"))
            await _queued(gate, 1)
            cancelled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            waiting = asyncio.create_task(write("next"))
            await _queued(gate, 2)
        await asyncio.wait_for(waiting, 30)  # served once the holder committed: nothing else held it
        assert not gate.held
        async with session_scope(sessions) as session:
            rows = (await session.execute(text("SELECT who FROM gate_probe ORDER BY id"))).scalars().all()
        assert rows == ["holder", "next"]
    finally:
        await _dispose(engine)
