"""Every shape of "database unavailable" answers 503 with Retry-After in the error envelope, never
a 500: a Postgres that is starting up (57P03, CannotConnectNowError), one that refuses connections,
one that hangs, and a database that does not accept connections (ALTER DATABASE ...
ALLOW_CONNECTIONS false). The guard talks to the real Postgres through a loopback front."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import pytest

from tests.conftest import _asyncpg_dsn, _pg_admin, make_settings, running_guard
from tests.security.pgfront import PgFront


def _via(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    auth = netloc[0] + "@" if len(netloc) == 2 else ""
    return f"{parts.scheme}://{auth}127.0.0.1:{port}{parts.path}"


async def _write(guard, headers, name: str):
    return await guard.client.post("/api/v1/components", headers=headers, json={"name": name})


def _assert_unavailable(response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    error = response.json()["error"]
    assert error["type"] == "service_unavailable" and set(error) == {
        "type",
        "message",
        "details",
        "timestamp",
    }


@pytest.fixture
def pg_url(db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip(
            "Postgres-only: SQLite has no server to lose (a locked file is covered in tests/foundation)"
        )
    return db_url


@pytest.mark.faults  # ~15 s: a real Postgres made to refuse, hang and start up
async def test_every_database_unavailable_shape_is_a_503(pg_url, tmp_path):
    target = urlsplit(pg_url.replace("postgresql+asyncpg", "postgresql"))
    front = PgFront(target.hostname or "127.0.0.1", target.port or 5432)
    port = await front.start()
    settings = make_settings(
        _via(pg_url, port), tmp_path, database={"pool_timeout": 2, "statement_timeout": 3}
    )
    try:
        async with running_guard(settings) as guard:
            admin = await guard.headers("admin")
            assert (await _write(guard, admin, "before")).status_code == 201
            for mode in ("starting", "refuse", "hang"):
                await front.set_mode(mode)
                _assert_unavailable(await asyncio.wait_for(_write(guard, admin, f"during-{mode}"), 60))
                _assert_unavailable(
                    await asyncio.wait_for(guard.client.get("/api/v1/components", headers=admin), 60)
                )
            await front.set_mode("forward")
            for _ in range(20):  # the pool reconnects by itself
                response = await _write(guard, admin, "after")
                if response.status_code == 201:
                    break
                await asyncio.sleep(0.5)
            assert response.status_code == 201, response.text
            assert guard.runtime.metrics.db_unavailable._value.get() >= 6
    finally:
        await front.close()


async def test_database_not_accepting_connections_is_a_503(pg_url, tmp_path):
    name = urlsplit(pg_url).path.lstrip("/")
    admin_url = pg_url.rsplit("/", 1)[0] + "/postgres"
    settings = make_settings(pg_url, tmp_path)
    async with running_guard(settings) as guard:
        admin = await guard.headers("admin")
        await _pg_admin(admin_url, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            await _pg_admin(
                admin_url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{name}' AND pid <> pg_backend_pid()",
            )
            _assert_unavailable(await _write(guard, admin, "refused"))
        finally:
            await _pg_admin(admin_url, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        assert _asyncpg_dsn(pg_url)  # the database is back for the fixture's cleanup
