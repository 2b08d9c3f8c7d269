"""The SQLite engine's write gate (app/db/write_gate.py): the writers of one process are served one at
a time, each as soon as the previous one's transaction ended; the reaction's writers
(``reaction_writes()``) before routine ones, each class in the order it came, and never more than
`URGENT_IN_A_ROW` of them in a row while a routine writer waits; reads never queue; a held gate ends
in SQLite's own "database is locked" after the busy timeout (a nested writer in one task included);
a statement cancelled while it may still run keeps the gate until its transaction ends; another
process still meets SQLite's lock. Postgres has no gate: its writers wait on row locks, and a nested
session writing other rows goes through."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3

import pytest
from sqlalchemy import exc, text

from app.db.engine import create_engine, create_sessionmaker, write_gate
from app.db.session import hold_write_lock, session_scope
from app.db.write_gate import (
    URGENT_IN_A_ROW,
    GatedConnection,
    WriteGate,
    in_reaction,
    reaction_writes,
    takes_write_lock,
)
from tests.conftest import make_settings

WAIT = 30  # a bound for what must happen, never a speed claim


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
    """Until `count` writers reached the gate and queued (pacing only)."""
    async with asyncio.timeout(WAIT):
        while gate.waits < count:
            await asyncio.sleep(0.005)


async def _rows(sessions) -> list[str]:
    async with session_scope(sessions) as session:
        return list((await session.execute(text("SELECT who FROM gate_probe ORDER BY id"))).scalars())


def _writer(sessions):
    async def write(who: str, *, reaction: bool = False) -> None:
        with reaction_writes() if reaction else contextlib.nullcontext():
            async with session_scope(sessions) as session:
                await session.execute(text("INSERT INTO gate_probe (who) VALUES (:w)"), {"w": who})

    return write


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


async def test_a_reaction_is_its_own_task_not_the_tasks_it_starts():
    seen: list[bool] = []

    async def child() -> None:
        seen.append(in_reaction())

    assert not in_reaction()
    with reaction_writes():
        assert in_reaction()
        await asyncio.create_task(child())  # a lease renewal, a notification: routine
    assert not in_reaction()
    assert seen == [False]


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
    write = _writer(sessions)
    try:
        names = [f"w{i}" for i in range(6)]
        tasks = []
        async with session_scope(sessions) as holder:
            await holder.execute(text("INSERT INTO gate_probe (who) VALUES ('holder')"))
            for number, name in enumerate(names, start=1):
                tasks.append(asyncio.create_task(write(name)))
                await _queued(gate, number)
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
        assert await _rows(sessions) == ["holder", *names]
        assert not gate.held
    finally:
        await _dispose(engine)


async def test_reaction_writers_go_before_routine_ones_each_in_order(db_url, tmp_path):
    """Routine writers queued first; reaction writers queued after them get the lock first, in the
    order they came, then the routine ones in theirs. On Postgres every writer goes through (no gate)."""
    engine = await _engine(db_url, tmp_path)
    sessions = create_sessionmaker(engine)
    gate = write_gate(engine)
    write = _writer(sessions)
    try:
        if gate is None:
            await asyncio.gather(write("r0"), write("u0", reaction=True))
            assert sorted(await _rows(sessions)) == ["r0", "u0"]
            return
        order = [("r0", False), ("r1", False), ("u0", True), ("r2", False), ("u1", True)]
        tasks = []
        async with session_scope(sessions) as holder:
            await holder.execute(text("INSERT INTO gate_probe (who) VALUES ('holder')"))
            for number, (who, reaction) in enumerate(order, start=1):
                tasks.append(asyncio.create_task(write(who, reaction=reaction)))
                await _queued(gate, number)
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
        assert await _rows(sessions) == ["holder", "u0", "u1", "r0", "r1", "r2"]
        assert gate.urgent_waits == 2 and not gate.held
    finally:
        await _dispose(engine)


async def test_routine_writers_progress_under_a_steady_stream_of_reactions(db_url, tmp_path):
    """Reaction writers that keep coming (each one queues the next before it commits) never keep a
    routine writer out for more than URGENT_IN_A_ROW turns."""
    if not _sqlite(db_url):
        pytest.skip("the gate is SQLite's")
    engine = await _engine(db_url, tmp_path)
    sessions = create_sessionmaker(engine)
    gate = write_gate(engine)
    assert gate is not None
    stream_len = 4 * URGENT_IN_A_ROW + 3
    stream: list[asyncio.Task] = []

    async def reaction(number: int) -> None:
        with reaction_writes():
            async with session_scope(sessions) as session:
                await session.execute(text("INSERT INTO gate_probe (who) VALUES (:w)"), {"w": f"u{number}"})
                if number + 1 < stream_len:  # the next reaction is waiting before this one commits
                    stream.append(asyncio.create_task(reaction(number + 1)))
                    waits = gate.waits
                    async with asyncio.timeout(WAIT):
                        while gate.waits == waits:
                            await asyncio.sleep(0.002)

    try:
        async with session_scope(sessions) as holder:
            await holder.execute(text("INSERT INTO gate_probe (who) VALUES ('holder')"))
            routine = []
            for i in range(2):
                routine.append(asyncio.create_task(_writer(sessions)(f"r{i}")))
                await _queued(gate, i + 1)
            stream.append(asyncio.create_task(reaction(0)))
            await _queued(gate, 3)
        await asyncio.wait_for(asyncio.gather(*routine), WAIT)
        while len(stream) < stream_len or not all(t.done() for t in stream):
            await asyncio.wait_for(asyncio.gather(*stream), WAIT)
        rows = await _rows(sessions)
        assert len(rows) == 1 + 2 + stream_len
        # Each routine writer had its turn after at most URGENT_IN_A_ROW reactions in a row...
        assert rows.index("r0") == 1 + URGENT_IN_A_ROW
        assert rows.index("r1") == rows.index("r0") + 1 + URGENT_IN_A_ROW
        # ...and the reactions went in the order they came.
        assert [r for r in rows if r.startswith("u")] == [f"u{i}" for i in range(stream_len)]
        assert gate.routine_turns == 2 and not gate.held
    finally:
        await _dispose(engine)


async def test_a_kept_reaction_holds_the_gate_across_its_commits(db_url, tmp_path):
    """A decision's claim and acting marker are two transactions (the claim is committed before the
    marker, for the reconciler): with `keep` no routine writer comes in between them, and the gate is
    given back when the block ends."""
    engine = await _engine(db_url, tmp_path)
    sessions = create_sessionmaker(engine)
    gate = write_gate(engine)
    write = _writer(sessions)
    try:
        with reaction_writes(keep=True):
            await write("claim")
            routine = asyncio.create_task(write("routine"))
            if gate is not None:
                await _queued(gate, 1)
                assert gate.held
            await write("marker")
        await asyncio.wait_for(routine, WAIT)
        if gate is None:  # Postgres: no gate, row locks only
            assert sorted(await _rows(sessions)) == ["claim", "marker", "routine"]
            return
        assert await _rows(sessions) == ["claim", "marker", "routine"]
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
    is SQLite's own (compared with what another process's lock gives), a reaction's too. On
    Postgres the nested session writes another row and goes through."""
    engine = await _engine(db_url, tmp_path, statement_timeout=0.5)
    sessions = create_sessionmaker(engine)
    try:
        async with session_scope(sessions) as outer:
            await outer.execute(text("INSERT INTO gate_probe (who) VALUES ('outer')"))
            if _sqlite(db_url):
                for reaction in (False, True):
                    with (
                        pytest.raises(exc.OperationalError) as gated,
                        reaction_writes() if reaction else contextlib.nullcontext(),
                    ):
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
        assert gate is not None and not gate.held and gate.queued == 0
        # Another process holds SQLite's lock: the gate is free, the busy handler decides, same error.
        other = sqlite3.connect(engine.url.database, isolation_level=None)
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
            with reaction_writes():
                async with session_scope(sessions) as session:
                    await hold_write_lock(session)
                    await session.execute(text("INSERT INTO gate_probe (who) VALUES ('mine')"))

        task = asyncio.create_task(write())
        await asyncio.sleep(0.2)
        assert not task.done()  # held by the other process's transaction
        other.execute("COMMIT")
        await asyncio.wait_for(task, WAIT)
        assert await _rows(sessions) == ["other", "mine"]
    finally:
        other.close()
        await _dispose(engine)


async def test_a_failed_write_gives_the_gate_back(db_url, tmp_path):
    engine = await _engine(db_url, tmp_path)
    sessions = create_sessionmaker(engine)
    gate = write_gate(engine)
    write = _writer(sessions)
    try:
        await write("x")
        with pytest.raises(exc.IntegrityError):
            await write("x", reaction=True)
        if gate is not None:
            assert not gate.held
        await write("y")
    finally:
        await _dispose(engine)


async def test_a_writer_cancelled_in_the_queue_takes_nothing(db_url, tmp_path):
    if not _sqlite(db_url):
        pytest.skip("the gate is SQLite's")
    engine = await _engine(db_url, tmp_path)
    sessions = create_sessionmaker(engine)
    gate = write_gate(engine)
    assert gate is not None
    write = _writer(sessions)
    try:
        async with session_scope(sessions) as holder:
            await holder.execute(text("INSERT INTO gate_probe (who) VALUES ('holder')"))
            cancelled = asyncio.create_task(write("cancelled", reaction=True))
            await _queued(gate, 1)
            cancelled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            waiting = asyncio.create_task(write("next"))
            await _queued(gate, 2)
        await asyncio.wait_for(waiting, WAIT)  # served once the holder committed: nothing else held it
        assert not gate.held
        assert await _rows(sessions) == ["holder", "next"]
    finally:
        await _dispose(engine)


async def test_a_statement_cancelled_before_it_ran_keeps_the_gate_until_its_transaction_ends(tmp_path):
    """A write cancelled while it waits on the connection's thread (behind a slow read) still runs
    there and takes SQLite's lock: the gate is held from it to the end of that transaction."""
    path = tmp_path / "cancel.db"
    setup = sqlite3.connect(path)
    setup.execute("CREATE TABLE t (n INTEGER)")
    setup.close()
    gate = WriteGate(timeout_s=WAIT)
    conn = await GatedConnection(lambda: sqlite3.connect(path), gate)
    slow_read = (
        "SELECT max(x) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL "
        "SELECT x + 1 FROM c WHERE x < 3000000) SELECT x FROM c)"
    )
    try:
        reading = asyncio.create_task(conn.execute(slow_read))
        await asyncio.sleep(0)  # on the connection's thread first
        writing = asyncio.create_task(conn.execute("INSERT INTO t VALUES (1)"))
        await asyncio.sleep(0)
        writing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writing
        assert not reading.done() and not gate.held  # the write has not run yet, but it will
        await reading
        await conn.execute("SELECT 1")  # after the cancelled write, on the same thread
        assert gate.holder is conn  # it ran: SQLite's lock and the gate are its transaction's
        await conn.rollback()
        assert not gate.held
    finally:
        await conn.close()


async def test_a_connection_closed_in_its_write_transaction_gives_the_gate_back(tmp_path):
    path = tmp_path / "close.db"
    setup = sqlite3.connect(path)
    setup.execute("CREATE TABLE t (n INTEGER)")
    setup.close()
    gate = WriteGate(timeout_s=WAIT)
    conn = await GatedConnection(lambda: sqlite3.connect(path), gate)
    await conn.execute("INSERT INTO t VALUES (1)")
    assert gate.holder is conn
    await conn.close()
    assert not gate.held
