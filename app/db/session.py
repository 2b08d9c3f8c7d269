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
