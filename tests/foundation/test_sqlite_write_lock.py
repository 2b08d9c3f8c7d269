"""A writer on the reaction's path (the healing claim, a flush that changes a status) takes SQLite's
write lock up front, trying again every millisecond while another connection holds it, instead of
sleeping in SQLite's busy handler (1..100 ms between tries): it takes the lock as soon as it is free
(app/db/sqlite_driver.py ``take_write_lock``). The busy timeout still bounds the wait and is left as
it was. On Postgres nothing changes (FOR UPDATE does the locking)."""

from __future__ import annotations

import sqlite3
import time

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from app.db import sqlite_driver
from app.db.engine import create_engine, create_sessionmaker
from app.db.models.healing import HealingBudget
from app.healing.budgets import load_budget
from tests.conftest import make_settings

BUSY_S = 2.0  # the engine's busy timeout here: without the polling, a held lock is an error after it


@pytest.fixture
async def engine(db_url, tmp_path):
    engine = create_engine(make_settings(db_url, tmp_path, database={"statement_timeout": BUSY_S}))
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def holder(engine):
    """Another connection to the same SQLite file, holding the write lock until told to let go (the
    engine's pooled connection is opened before: opening one sets pragmas that wait for the lock)."""
    if engine.dialect.name != "sqlite":
        yield None
        return
    async with engine.connect() as warm:
        await warm.execute(text("SELECT 1"))
    conn = sqlite3.connect(make_url(str(engine.url)).database, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.rollback()
        conn.close()


def release_after(holder, tries: int, monkeypatch) -> list[float]:
    """The driver's sleeps between tries are recorded; the holder commits after ``tries`` of them."""
    sleeps: list[float] = []
    real = sqlite_driver.sleep

    def counted(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == tries:
            holder.commit()
        real(seconds)

    monkeypatch.setattr(sqlite_driver, "sleep", counted)
    return sleeps


async def test_the_lock_is_tried_every_millisecond_until_it_is_free(engine, holder, monkeypatch):
    sessions = create_sessionmaker(engine)
    if holder is None:  # Postgres: nothing to take, the session writes as before
        async with sessions() as session:
            await sqlite_driver.take_write_lock(session)
            assert (await session.execute(text("SELECT 1"))).scalar_one() == 1
        return
    sleeps = release_after(holder, 3, monkeypatch)
    async with sessions() as session:
        await sqlite_driver.take_write_lock(session)
        assert sleeps == [sqlite_driver.WRITE_LOCK_POLL_S] * 3
        # The session holds the lock now: another writer that does not wait is refused.
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            holder.execute("PRAGMA busy_timeout=0")
            holder.execute("BEGIN IMMEDIATE")
        busy = (await session.execute(text("PRAGMA busy_timeout"))).scalar_one()
        assert busy == int(BUSY_S * 1000)  # the connection's own busy handler is back for what follows
        await session.rollback()


async def test_the_wait_is_still_bounded_by_the_busy_timeout(engine, holder, monkeypatch):
    if holder is None:
        pytest.skip("SQLite's write lock")
    monkeypatch.setattr(sqlite_driver, "sleep", lambda _s: time.sleep(0.05))  # fewer tries, same bound
    sessions = create_sessionmaker(engine)
    async with sessions() as session:
        with pytest.raises(OperationalError, match="locked"):
            await sqlite_driver.take_write_lock(session)
        await session.rollback()
        busy = (await session.execute(text("PRAGMA busy_timeout"))).scalar_one()
        assert busy == int(BUSY_S * 1000)


async def test_the_claims_budget_read_takes_the_lock_as_soon_as_it_is_free(engine, holder, monkeypatch):
    """The claim's transaction (``load_budget`` starts it) does not wait in the busy handler: held for
    longer than the busy timeout's first sleeps, the lock is still taken right after its release."""
    sessions = create_sessionmaker(engine)
    sleeps = release_after(holder, 5, monkeypatch) if holder is not None else []
    async with sessions() as session:
        budget = await load_budget(session, "trainer")
        assert isinstance(budget, HealingBudget) and budget.backoff_level == 0
        await session.commit()
    if holder is not None:
        assert sleeps == [sqlite_driver.WRITE_LOCK_POLL_S] * 5
    async with sessions() as session:
        assert (await load_budget(session, "trainer", lock=False)).component == "trainer"
