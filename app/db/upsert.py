"""An INSERT that yields to a row already there: ``INSERT ... ON CONFLICT DO NOTHING`` in the
session's dialect (both speak it; the construct is the dialect's own). One round trip where a
savepoint around an insert that may violate a unique index takes three."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

_INSERTS: dict[str, Any] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def insert_unless_present(session: AsyncSession, target: Any) -> Any:
    """``insert(target)`` that inserts nothing (and returns no row) where a unique index already has
    the row: add ``.values(...)`` and ``.returning(...)``."""
    return _INSERTS[session.get_bind().dialect.name](target).on_conflict_do_nothing()
