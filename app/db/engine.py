"""Engine factory: SQLite pragmas for the embedded default, a bounded asyncpg pool for production.

The dialect differences that matter to the engine live here and nowhere else. A file SQLite
database gets a real connection pool too: opening a connection (a driver thread, the file, the
PRAGMAs below) cost more than a whole small request. Pooled connections keep WAL, foreign keys and
the busy timeout they were opened with, so concurrent writers still serialize on SQLite's own write
lock and wait for it instead of failing. Statements go through ``sqlite_driver.py``: one trip to the
driver's thread each, so a write transaction holds the lock for fewer event loop rounds.
``:memory:`` keeps SQLAlchemy's default (one shared connection), since every new connection would
see an empty database.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from app.config.settings import Settings
from app.db.sqlite_driver import one_trip_dbapi


def _sqlite_pragmas(busy_ms: int):
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets readers run beside the single writer; foreign keys are off by default in SQLite;
        # the busy timeout turns a held write lock into a wait instead of an error.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return on_connect


def _in_memory(url: str) -> bool:
    database = make_url(url).database
    return not database or database == ":memory:" or "mode=memory" in url


def ensure_sqlite_dir(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


# A pooled Postgres connection idle longer than this is pinged (a round trip) before it is handed out.
PING_IDLE_SECONDS = 5.0
_RETURNED = "pipeline_guard_returned_at"  # connection info key: when it last went back to the pool


def _ping_when_idle(engine: AsyncEngine, idle_seconds: float) -> None:
    """Pessimistic disconnect handling without a round trip per checkout (``pool_pre_ping`` pinged
    every checkout: ~2.4 % of the event loop's time under ingest). At checkout a connection whose
    socket the server closed (a killed backend, a restart: asyncpg sees the EOF) is replaced without
    a round trip, and one that sat idle longer than ``idle_seconds`` (a silent network cut, a proxy
    that dropped it) is pinged first. Either failure invalidates the pool, as a failed pre-ping did:
    the checkout reconnects, and the other pooled connections reconnect at their next checkout."""
    dialect = engine.dialect

    def on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_RETURNED] = time.monotonic()

    def on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        driver = getattr(dbapi_connection, "driver_connection", None)
        if driver is not None and driver.is_closed():
            raise exc.InvalidatePoolError("the server closed this pooled connection")
        returned = record.info.get(_RETURNED)
        if returned is None or time.monotonic() - returned < idle_seconds:
            return  # fresh from connect, or back in the pool moments ago
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise exc.InvalidatePoolError(f"an idle pooled connection failed its ping: {error}") from error

    event.listen(engine.sync_engine, "checkin", on_checkin)
    event.listen(engine.sync_engine, "checkout", on_checkout)


def create_engine(settings: Settings, *, url: str | None = None) -> AsyncEngine:
    url = url or settings.database_url
    db = settings.database
    if url.startswith("sqlite"):
        ensure_sqlite_dir(url)
        pool: dict[str, Any] = {}
        if not _in_memory(url):
            pool = {
                "pool_size": db.pool_size,
                "max_overflow": db.max_overflow,
                "pool_timeout": db.pool_timeout,
            }
        # A writer waits for SQLite's write lock as long as a Postgres statement may run: pooled
        # requests arrive faster than reconnecting ones did, and SQLite's busy handler is not
        # fair, so under heavy load a writer (an audit row) could otherwise give up after seconds.
        if make_url(url).get_driver_name() == "aiosqlite" and (dbapi := one_trip_dbapi()) is not None:
            pool["module"] = dbapi  # a statement is one trip to the driver's thread
        engine = create_async_engine(
            url, echo=db.echo, connect_args={"timeout": db.statement_timeout}, **pool
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas(int(db.statement_timeout * 1000)))
        return engine
    engine = create_async_engine(
        url,
        echo=db.echo,
        pool_size=db.pool_size,
        max_overflow=db.max_overflow,
        # A short pool timeout turns pool exhaustion into a fast 503 instead of a hung request.
        pool_timeout=db.pool_timeout,
        pool_recycle=1800,
        # The connection returned last is handed out first: under load the few in use keep their
        # backends' caches warm instead of a request going to each of ``pool_size`` backends in turn
        # (ingest: ~0.1 us less Postgres CPU per point); the others sit idle and are pinged when
        # next used (``_ping_when_idle``).
        pool_use_lifo=True,
        connect_args={
            "timeout": 5,
            "command_timeout": db.statement_timeout,
            "server_settings": {"application_name": "pipeline-guard"},
        },
    )
    _ping_when_idle(engine, PING_IDLE_SECONDS)
    return engine


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
