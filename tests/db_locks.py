"""Seeing, from outside, that a statement is blocked by another transaction's row lock."""

from __future__ import annotations

from sqlalchemy import text


async def waiting_on_a_lock(engine) -> bool:
    """Whether a session of this database waits for a lock (Postgres). SQLite has one writer, which
    waits in its busy handler, invisible from outside: True."""
    async with engine.connect() as conn:
        if conn.dialect.name != "postgresql":
            return True  # SQLite: one writer; the delete waits in the busy handler
        found = await conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
        )
        return found.scalar_one() > 0
