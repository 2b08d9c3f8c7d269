"""On SQLite a statement is one trip to the driver's thread (app/db/sqlite_driver.py): a write
transaction then holds SQLite's one write lock for one event loop round per statement, not four.
What a statement answers (rows, row counts, errors, streamed results) is the same on both dialects."""

from __future__ import annotations

import aiosqlite
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from app.db.engine import create_engine
from tests.conftest import make_settings


@pytest.fixture
async def engine(db_url, tmp_path):
    engine = create_engine(make_settings(db_url, tmp_path))
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE one_trip (id INTEGER PRIMARY KEY, v TEXT UNIQUE)"))
    try:
        yield engine
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("DROP TABLE one_trip"))
        await engine.dispose()


async def test_each_statement_is_one_trip_to_the_driver_thread(engine, monkeypatch):
    if engine.dialect.name != "sqlite":
        pytest.skip("the SQLite driver's thread")
    trips: list[str] = []
    execute = aiosqlite.Connection._execute

    async def counted(self, fn, *args, **kwargs):
        trips.append(getattr(fn, "__name__", "?"))
        return await execute(self, fn, *args, **kwargs)

    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))  # the connection is open and its transaction begun
        monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
        await conn.execute(text("INSERT INTO one_trip (id, v) VALUES (1, 'a')"))
        assert len(trips) == 1
        await conn.exec_driver_sql("INSERT INTO one_trip (id, v) VALUES (?, ?)", [(2, "b"), (3, "c")])
        assert len(trips) == 2
        assert (await conn.execute(text("SELECT v FROM one_trip ORDER BY id"))).scalars().all() == [
            "a",
            "b",
            "c",
        ]
        assert len(trips) == 3
        monkeypatch.undo()
        await conn.commit()


async def test_a_statement_answers_as_before(engine):
    async with engine.begin() as conn:
        inserted = await conn.execute(text("INSERT INTO one_trip (id, v) VALUES (1, 'a'), (2, 'b')"))
        assert inserted.rowcount == 2
        updated = await conn.execute(text("UPDATE one_trip SET v = v || '!' WHERE id >= 1"))
        assert updated.rowcount == 2
        assert (await conn.execute(text("SELECT count(*) FROM one_trip WHERE id > 5"))).scalar_one() == 0
        assert (await conn.execute(text("SELECT v FROM one_trip WHERE id = 7"))).first() is None
        rows = (await conn.execute(text("SELECT id, v FROM one_trip ORDER BY id"))).all()
        assert [tuple(r) for r in rows] == [(1, "a!"), (2, "b!")]
        streamed = await conn.stream(text("SELECT id FROM one_trip ORDER BY id"))
        assert [r[0] async for r in streamed] == [1, 2]


async def test_an_error_is_the_usual_one_and_rolls_back(engine):
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO one_trip (id, v) VALUES (1, 'a')"))
            await conn.execute(text("INSERT INTO one_trip (id, v) VALUES (2, 'a')"))
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM one_trip"))).scalar_one() == 0
        await conn.execute(text("INSERT INTO one_trip (id, v) VALUES (1, 'a')"))  # still usable
        await conn.commit()


async def test_an_adapter_without_the_hooks_keeps_sqlalchemys_own(tmp_path, monkeypatch):
    # Another SQLAlchemy release may shape its aiosqlite adapter differently: the engine then keeps
    # SQLAlchemy's adapter (four trips a statement, same answers) instead of failing.
    from app.db import sqlite_driver

    monkeypatch.setattr(sqlite_driver, "_HOOKS", (*sqlite_driver._HOOKS, "_a_hook_this_release_lacks"))
    assert sqlite_driver.one_trip_dbapi() is None
    engine = create_engine(make_settings(f"sqlite+aiosqlite:///{tmp_path}/plain.db", tmp_path))
    try:
        async with engine.connect() as conn:
            assert not isinstance(
                conn.sync_connection.connection.dbapi_connection, sqlite_driver.OneTripConnection
            )
    finally:
        await engine.dispose()
