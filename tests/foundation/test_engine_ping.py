"""The Postgres pool pings a connection only when it sat idle, and still survives a killed backend.

Real Postgres: a backend is killed with ``pg_terminate_backend`` while its connection waits in the
pool; the next checkout must get a working connection without a failed request, and a connection
handed out again moments after it was returned must not cost a round trip (a ping).
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import text

from app.db import engine as engine_module
from app.db.engine import create_engine
from tests.conftest import make_settings


@pytest.fixture
def pg_url(postgres_template_url) -> str:
    return postgres_template_url


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _backend_pid(engine) -> int:
    return (await _backend(engine))[0]


async def _backend(engine):
    """(backend pid, the asyncpg connection) of the connection a checkout hands out."""
    async with engine.connect() as conn:
        pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        return pid, (await conn.get_raw_connection()).driver_connection


def _count_pings(engine, monkeypatch) -> list[int]:
    pings: list[int] = []
    real = engine.dialect.do_ping

    def counting(dbapi_connection):
        pings.append(1)
        return real(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counting)
    return pings


async def test_a_connection_reused_at_once_is_not_pinged(pg_url, tmp_path, monkeypatch):
    engine = create_engine(make_settings(pg_url, tmp_path))
    pings = _count_pings(engine, monkeypatch)
    try:
        first = await _backend_pid(engine)
        for _ in range(5):
            assert await _backend_pid(engine) == first  # the same pooled connection
        assert pings == []
    finally:
        await engine.dispose()


async def test_an_idle_connection_is_pinged(pg_url, tmp_path, monkeypatch):
    monkeypatch.setattr(engine_module, "PING_IDLE_SECONDS", 0.0)
    engine = create_engine(make_settings(pg_url, tmp_path))
    pings = _count_pings(engine, monkeypatch)
    try:
        first = await _backend_pid(engine)
        assert await _backend_pid(engine) == first
        assert len(pings) == 1
    finally:
        await engine.dispose()


@pytest.mark.parametrize("idle_seconds", [0.0, 3600.0], ids=["pinged", "not-pinged"])
async def test_a_killed_backend_is_replaced_at_checkout(pg_url, tmp_path, monkeypatch, idle_seconds):
    monkeypatch.setattr(engine_module, "PING_IDLE_SECONDS", idle_seconds)
    engine = create_engine(make_settings(pg_url, tmp_path))
    try:
        victim, driver = await _backend(engine)
        admin = await asyncpg.connect(_dsn(pg_url))
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", victim)
        finally:
            await admin.close()
        if idle_seconds:
            # Without a ping, the pool learns of the kill from the socket: let the event loop read
            # the server's goodbye (a round trip would, too).
            for _ in range(500):
                if driver.is_closed():
                    break
                await asyncio.sleep(0.01)
            assert driver.is_closed()
        # The next request works, on a new backend: no error reaches the caller.
        assert await _backend_pid(engine) != victim
    finally:
        await engine.dispose()


async def test_the_connection_returned_last_is_handed_out_first(pg_url, tmp_path):
    """The pool is LIFO: under load the few connections in use keep their backends' caches warm
    (a batch is not spread over every backend in turn), and the others sit idle."""
    engine = create_engine(make_settings(pg_url, tmp_path))
    try:
        async with engine.connect() as first, engine.connect() as second:
            pids = [
                (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one() for conn in (first, second)
            ]
        # ``second`` went back to the pool first, ``first`` last
        assert await _backend_pid(engine) == pids[0]
        assert await _backend_pid(engine) == pids[0]
    finally:
        await engine.dispose()
