"""Monitoring fixtures: a running guard with the scheduler installed but driven by the test
(`await scheduler.run_once()`), and real HTTP/TCP targets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web

from tests.conftest import make_settings, running_guard

FAST = {"interval": 5, "health_check_timeout": 2, "failure_threshold": 2, "success_threshold": 1,
        "flap_window": 6, "flap_threshold": 4, "recovery_grace": 30, "command_checks_enabled": True}


def mon_settings(db_url, tmp_path, monitoring: dict | None = None, **overrides):
    return make_settings(db_url, tmp_path, pipeline={"monitoring": {**FAST, **(monitoring or {})}}, **overrides)


@contextlib.asynccontextmanager
async def monitored(settings) -> AsyncIterator:
    """A running app whose scheduler the test drives; yields (guard, scheduler)."""
    from app.monitoring.declarative import sync_declared_components
    from app.monitoring.wiring import install

    def install_without_loops(state) -> list:
        install(state)  # the scheduler goes on state.extras; no loop runs it: the test does
        return []

    async with running_guard(settings, build_services=install_without_loops) as guard:
        scheduler = guard.state.extras["scheduler"]
        _tolerate_existing_users(guard)
        await sync_declared_components(guard.state)
        await scheduler.open()
        try:
            yield guard, scheduler
        finally:
            await scheduler.close()


def _tolerate_existing_users(guard) -> None:
    """A second lifecycle on the same database finds the test users already there."""
    from sqlalchemy.exc import IntegrityError

    original = guard.add_user

    async def add_user(username, role, **kwargs):
        with contextlib.suppress(IntegrityError):
            await original(username, role, **kwargs)

    guard.add_user = add_user


async def add_component(guard, name: str, check: dict, **fields) -> dict:
    response = await guard.client.post("/api/v1/components", json={"name": name, "check": check, **fields},
                                       headers=await guard.headers("admin"))
    assert response.status_code == 201, response.text
    return response.json()


async def status_of(guard, name: str) -> dict:
    response = await guard.client.get(f"/api/v1/components/{name}", headers=await guard.headers("viewer"))
    assert response.status_code == 200, response.text
    return response.json()["state"]


@dataclass
class Target:
    base: str
    port: int
    hits: dict

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


@pytest.fixture
async def http_target() -> AsyncIterator[Target]:
    hits: dict[str, int] = {}
    flip = {"ok": True}

    async def count(request):
        hits[request.path] = hits.get(request.path, 0) + 1

    async def ok(request):
        await count(request)
        return web.Response(text="all good")

    async def error(request):
        await count(request)
        return web.Response(status=500, text="boom")

    async def hang(request):
        await count(request)
        await asyncio.Event().wait()

    async def toggle(request):
        await count(request)
        return web.Response(status=200 if flip["ok"] else 503, text="toggle")

    async def set_toggle(request):
        flip["ok"] = request.query.get("ok") == "1"
        return web.Response(text="set")

    async def huge(request):
        resp = web.StreamResponse()
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            for _ in range(200):
                await resp.write(b"x" * 65536)
        return resp

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/500", error)
    app.router.add_get("/hang", hang)
    app.router.add_get("/toggle", toggle)
    app.router.add_get("/set", set_toggle)
    app.router.add_get("/huge", huge)
    runner = web.AppRunner(app, shutdown_timeout=0.5, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Target(f"http://127.0.0.1:{port}", port, hits)
    finally:
        await runner.cleanup()


@pytest.fixture
async def garbage_port() -> AsyncIterator[int]:
    async def handle(reader, writer):
        with contextlib.suppress(Exception):
            await reader.read(1024)
            writer.write(b"\x00\xffNOT HTTP\r\n\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@pytest.fixture
def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port
