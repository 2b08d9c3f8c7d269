"""The one transaction owner.

Requests get a session from ``SessionDep`` (commits when the handler returns, rolls back when it
raises); background loops use ``session_scope``. Services and repositories only ``flush()``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.sqlite_driver import OneTripConnection


@asynccontextmanager
async def session_scope(sessionmaker: async_sessionmaker) -> AsyncIterator[AsyncSession]:
    session: AsyncSession = sessionmaker()
    try:
        yield session
        await session.commit()
    except BaseException:
        await session.rollback()
        raise
    finally:
        await session.close()


async def hold_write_lock(session: AsyncSession) -> None:
    """What ``SELECT ... FOR UPDATE`` gives on Postgres, for SQLite: this session takes the database's
    write lock now (waiting for it like any writer), so what it reads next and decides on cannot be
    changed by another transaction before it commits. The SQLite driver runs reads outside a
    transaction until the first write, so without this a decision could read a row from before
    another writer's commit and the rest from after it. Nothing to do on Postgres (use FOR UPDATE) or
    once this session has written (it holds the lock already)."""
    connection = await session.connection()
    if connection.dialect.name != "sqlite":
        return
    driver = (await connection.get_raw_connection()).driver_connection
    if driver is not None and not driver.in_transaction:
        await connection.exec_driver_sql("BEGIN IMMEDIATE")


async def write_briefly(session: AsyncSession) -> None:
    """SQLite: this transaction is short and the reaction may wait for it (a result flush, a healing
    decision): once it holds the write lock its small statements run on the event loop's thread
    instead of one loop round each on the driver's thread, and its first write takes the lock there
    when it is free (``sqlite_driver.py``). Lasts until the commit or rollback; nothing to do on
    Postgres, whose writers do not share one lock."""
    if session.get_bind().dialect.name != "sqlite":
        return  # told without a connection: nothing at all happens on Postgres
    adapter = (await (await session.connection()).get_raw_connection()).dbapi_connection
    if isinstance(adapter, OneTripConnection):  # not with SQLAlchemy's own adapter (another release)
        adapter.write_briefly()


async def driver_connection(session: AsyncSession) -> Any:
    """The driver's own connection under ``session`` (asyncpg's for COPY and array statements),
    inside the session's transaction. SQLAlchemy's asyncpg adapter sends BEGIN lazily, before the
    first statement it runs itself: a statement sent to the driver before that would run in
    autocommit, outside the transaction, and survive its rollback (a flush retried after a failure
    would then store its rows twice). So the adapter's transaction is begun here when it has not been
    yet. The SQLite driver begins its own transaction before the first write."""
    connection = await session.connection()
    proxied = await connection.get_raw_connection()
    if connection.dialect.name == "postgresql":
        adapter: Any = proxied.dbapi_connection  # the dialect's AsyncAdapt_asyncpg_connection
        async with adapter._execute_mutex:
            if adapter._transaction is None:
                await adapter._start_transaction()
    return proxied.driver_connection
