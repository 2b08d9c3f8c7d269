"""Reading the database's own error code out of a SQLAlchemy driver error."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

DEADLOCK = "40P01"  # Postgres aborted this statement to break a deadlock


def sqlstate(exc: DBAPIError) -> str | None:
    """The SQLSTATE the driver reported (asyncpg's ``sqlstate``, psycopg's ``pgcode``), if any."""
    orig = exc.orig
    for candidate in (orig, getattr(orig, "__cause__", None)):
        code = getattr(candidate, "pgcode", None) or getattr(candidate, "sqlstate", None)
        if code:
            return str(code)
    return None
