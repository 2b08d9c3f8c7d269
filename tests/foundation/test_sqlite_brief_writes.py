"""A brief write transaction (``write_briefly``: a result flush, a healing decision) holds SQLite's
write lock for its own work only: it takes the lock on the event loop's thread when it is free, and
its small statements then run there instead of one trip to the driver's thread (one event loop
round) each. A held lock is still waited for on the driver's thread, never on the loop. What the
statements answer (rows, errors, a rollback) is the same on both dialects."""

from __future__ import annotations

import asyncio

import aiosqlite
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from app.db.engine import create_engine, create_sessionmaker
from app.db.session import session_scope, write_briefly
from tests.conftest import make_settings


@pytest.fixture
async def sessions(db_url, tmp_path):
    engine = create_engine(make_settings(db_url, tmp_path))
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE brief_writes (id INTEGER PRIMARY KEY, v TEXT UNIQUE)"))
    try:
        yield create_sessionmaker(engine)
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("DROP TABLE brief_writes"))
        await engine.dispose()


def sqlite_only(sessions) -> None:
    if sessions.kw["bind"].dialect.name != "sqlite":
        pytest.skip("the SQLite driver's thread")


@pytest.fixture
def trips(monkeypatch) -> list[str]:
    """What goes to a SQLite driver's thread, by function name."""
    made: list[str] = []
    execute = aiosqlite.Connection._execute

    async def counted(self, fn, *args, **kwargs):
        made.append(getattr(fn, "__name__", "?"))
        return await execute(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return made


async def test_a_brief_transaction_makes_no_trip_while_it_holds_the_lock(sessions, trips):
    sqlite_only(sessions)
    async with session_scope(sessions) as session:
        await write_briefly(session)
        await session.execute(text("SELECT count(*) FROM brief_writes"))  # a read before the lock
        reads = len(trips)
        assert reads >= 1
        await session.execute(text("INSERT INTO brief_writes (id, v) VALUES (1, 'a')"))  # takes the lock
        await session.execute(
            text("INSERT INTO brief_writes (id, v) VALUES (:id, :v)"), [{"id": 2, "v": "b"}]
        )
        await session.execute(text("UPDATE brief_writes SET v = v || '!' WHERE id = 1"))
        assert (await session.execute(text("SELECT v FROM brief_writes ORDER BY id"))).scalars().all() == [
            "a!",
            "b",
        ]
        assert len(trips) == reads
        # A bulk statement still goes to the driver's thread: the event loop is not blocked by it.
        await session.execute(
            text("INSERT INTO brief_writes (id, v) VALUES (:id, :v)"),
            [{"id": i, "v": f"bulk {i}"} for i in range(10, 110)],
        )
        assert len(trips) == reads + 1
        before_commit = len(trips)
    assert trips[before_commit] == "commit"
    async with session_scope(sessions) as session:  # the next transaction is not brief unless it asks
        before = len(trips)
        await session.execute(text("INSERT INTO brief_writes (id, v) VALUES (3, 'c')"))
        assert len(trips) == before + 1
        assert (await session.execute(text("SELECT count(*) FROM brief_writes"))).scalar_one() == 103


async def test_a_held_lock_is_waited_for_on_the_driver_thread_not_on_the_loop(sessions, trips):
    sqlite_only(sessions)
    async with session_scope(sessions) as holder:
        await holder.execute(text("INSERT INTO brief_writes (id, v) VALUES (1, 'held')"))  # holds the lock
        written = asyncio.Event()

        async def brief_writer() -> None:
            async with session_scope(sessions) as session:
                await write_briefly(session)
                await session.execute(text("INSERT INTO brief_writes (id, v) VALUES (2, 'after')"))
                waited = len(trips)
                await session.execute(text("UPDATE brief_writes SET v = 'after!' WHERE id = 2"))
                assert len(trips) == waited  # once it holds the lock: no trip
            written.set()

        task = asyncio.create_task(brief_writer())
        for _ in range(20):
            await asyncio.sleep(0.01)  # the loop runs while the writer waits
        assert not written.is_set()
    await asyncio.wait_for(task, 30)
    async with session_scope(sessions) as session:
        rows = (await session.execute(text("SELECT id, v FROM brief_writes ORDER BY id"))).all()
    assert [tuple(r) for r in rows] == [(1, "held"), (2, "after!")]


async def test_a_brief_transaction_raises_and_rolls_back_as_before(sessions):
    with pytest.raises(IntegrityError):
        async with session_scope(sessions) as session:
            await write_briefly(session)
            await session.execute(text("INSERT INTO brief_writes (id, v) VALUES (1, 'a')"))
            await session.execute(text("INSERT INTO brief_writes (id, v) VALUES (2, 'a')"))
    async with session_scope(sessions) as session:
        await write_briefly(session)
        assert (await session.execute(text("SELECT count(*) FROM brief_writes"))).scalar_one() == 0
        await session.execute(text("INSERT INTO brief_writes (id, v) VALUES (1, 'kept')"))
    async with session_scope(sessions) as session:
        assert (await session.execute(text("SELECT v FROM brief_writes"))).scalars().all() == ["kept"]


async def test_an_in_memory_database_keeps_its_statements_on_the_driver_thread(tmp_path, trips):
    # The driver allows only its own thread there (SQLAlchemy's choice for :memory:).
    url = "sqlite+aiosqlite://"
    engine = create_engine(make_settings(url, tmp_path), url=url)
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            await session.execute(text("CREATE TABLE brief_memory (id INTEGER PRIMARY KEY)"))
            await write_briefly(session)
            before = len(trips)
            await session.execute(text("INSERT INTO brief_memory (id) VALUES (1)"))
            await session.execute(text("INSERT INTO brief_memory (id) VALUES (2)"))
            assert len(trips) == before + 2
            assert (await session.execute(text("SELECT count(*) FROM brief_memory"))).scalar_one() == 2
    finally:
        await engine.dispose()
