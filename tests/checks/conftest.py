"""Real targets on 127.0.0.1 for the check tests: an aiohttp server with misbehaving handlers,
and raw TCP servers (garbage bytes, banner, silent)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web


@dataclass
class Target:
    base: str
    host: str
    port: int

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


def build_app() -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="hello world, all systems nominal")

    async def error(request: web.Request) -> web.Response:
        # Echoes the Authorization header to prove the check never copies bodies into details.
        return web.Response(status=500, text=f"boom {request.headers.get('Authorization', '')}")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("s", "0.3")))
        return web.Response(text="slow but fine")

    async def hang(request: web.Request) -> web.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def huge(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        chunk = b"x" * 65536
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            for _ in range(800):  # 50 MiB if anyone read it all
                await resp.write(chunk)
        return resp

    async def json_doc(request: web.Request) -> web.Response:
        return web.json_response({"data": {"items": [{"status": "ok", "n": 3}]}, "ready": True})

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def redirect_to_ok(request: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    async def redirect_to_metadata(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")

    async def too_many(request: web.Request) -> web.Response:
        return web.Response(status=429, headers={"Retry-After": request.query.get("ra", "7")}, text="slow down")

    app = web.Application()
    app.router.add_route("*", "/ok", ok)
    app.router.add_get("/500", error)
    app.router.add_get("/slow", slow)
    app.router.add_get("/hang", hang)
    app.router.add_get("/huge", huge)
    app.router.add_get("/json", json_doc)
    app.router.add_get("/loop", loop)
    app.router.add_get("/redirect-ok", redirect_to_ok)
    app.router.add_get("/redirect-metadata", redirect_to_metadata)
    app.router.add_get("/429", too_many)
    return app


@pytest.fixture
async def http_target() -> AsyncIterator[Target]:
    # handler_cancellation: a client that gives up cancels the hanging handler, so cleanup is quick.
    runner = web.AppRunner(build_app(), shutdown_timeout=0.5, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Target(f"http://127.0.0.1:{port}", "127.0.0.1", port)
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def raw_server(on_connect) -> AsyncIterator[Target]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await on_connect(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield Target(f"http://127.0.0.1:{port}", "127.0.0.1", port)
    finally:
        server.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1):
                await server.wait_closed()


@pytest.fixture
async def garbage_target() -> AsyncIterator[Target]:
    async def garbage(reader, writer):
        await reader.read(1024)
        writer.write(b"\x00\xff\xfeTHIS IS NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()

    async with raw_server(garbage) as target:
        yield target


@pytest.fixture
async def banner_target() -> AsyncIterator[Target]:
    async def banner(reader, writer):
        writer.write(b"SSH-2.0-OpenSSH_9.6 pipeline-test\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    async with raw_server(banner) as target:
        yield target


@pytest.fixture
async def silent_target() -> AsyncIterator[Target]:
    async def silent(reader, writer):
        await asyncio.sleep(30)

    async with raw_server(silent) as target:
        yield target


@pytest.fixture
def closed_port() -> int:
    """A port that was just bound and released on 127.0.0.1: nothing listens there."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port
