"""The one transaction owner.

Requests get a session from ``SessionDep`` (commits when the handler returns, rolls back when it
raises); background loops use ``session_scope``. Services and repositories only ``flush()``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


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
