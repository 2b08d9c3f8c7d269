"""Real targets on 127.0.0.1 for probes and outbound requests: an aiohttp server with well- and
misbehaving routes, raw TCP servers that do not speak HTTP (garbage bytes, a banner, silence), and a
port nobody listens on.

tests/conftest.py registers this module as a pytest plugin, so its fixtures serve every directory:
``http_target``, ``garbage_target``, ``banner_target``, ``silent_target`` and ``closed_port``.

The HTTP target's routes:

==========================  =====================================================================
``* /ok``                   200 "hello world, all systems nominal"
``GET /500``                500 "boom <the Authorization header>" (to prove checks never copy bodies)
``GET /slow?s=0.3``         200 after ``s`` seconds
``GET /hang``               never answers (cancelled when the client gives up)
``GET /huge``               200 streaming 50 MiB, if anyone read it all
``GET /json``               a small JSON document
``GET /loop``               302 to itself
``GET /redirect-ok``        302 to /ok
``GET /redirect-metadata``  302 to the cloud metadata address
``GET /429?ra=7``           429 with ``Retry-After: <ra>``
``GET /toggle``             200 or 503, as the last ``GET /set?ok=1|0`` said (200 at first)
``POST /echo``              200 ``{"got": <the JSON body>}``
==========================  =====================================================================

Every request is counted in ``Target.hits`` by path.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web

HOST = "127.0.0.1"


@dataclass
class Target:
    """A server listening on 127.0.0.1. ``hits``: requests per path (HTTP targets only)."""

    port: int
    host: str = HOST
    hits: dict[str, int] = field(default_factory=dict)
    toggle_ok: bool = True

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


def build_app(target: Target) -> web.Application:
    """The HTTP target's routes (see the module docstring); they count into and toggle ``target``."""

    @web.middleware
    async def count(request: web.Request, handler):
        target.hits[request.path] = target.hits.get(request.path, 0) + 1
        return await handler(request)

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="hello world, all systems nominal")

    async def error(request: web.Request) -> web.Response:
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
            for _ in range(800):
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
        return web.Response(
            status=429, headers={"Retry-After": request.query.get("ra", "7")}, text="slow down"
        )

    async def toggle(request: web.Request) -> web.Response:
        return web.Response(status=200 if target.toggle_ok else 503, text="toggle")

    async def set_toggle(request: web.Request) -> web.Response:
        target.toggle_ok = request.query.get("ok") == "1"
        return web.Response(text="set")

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"got": await request.json()})

    app = web.Application(middlewares=[count])
    app.router.add_route("*", "/ok", ok)
    for path, handler in [
        ("/500", error),
        ("/slow", slow),
        ("/hang", hang),
        ("/huge", huge),
        ("/json", json_doc),
        ("/loop", loop),
        ("/redirect-ok", redirect_to_ok),
        ("/redirect-metadata", redirect_to_metadata),
        ("/429", too_many),
        ("/toggle", toggle),
        ("/set", set_toggle),
    ]:
        app.router.add_get(path, handler)
    app.router.add_post("/echo", echo)
    return app


@contextlib.asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[int]:
    """Serve `app` on a free 127.0.0.1 port until the block ends; yields the port."""
    # handler_cancellation: a client that gives up cancels the hanging handler, so cleanup is quick.
    runner = web.AppRunner(app, shutdown_timeout=0.5, handler_cancellation=True, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, HOST, 0).start()
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def raw_server(
    on_connect: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[Target]:
    """A TCP server on a free 127.0.0.1 port that runs `on_connect` for each connection."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await on_connect(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, HOST, 0)
    try:
        yield Target(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1):
                await server.wait_closed()


@pytest.fixture
async def http_target() -> AsyncIterator[Target]:
    target = Target(port=0)
    async with serve_app(build_app(target)) as port:
        target.port = port
        yield target


@pytest.fixture
async def garbage_target() -> AsyncIterator[Target]:
    """Answers any request with bytes that are not HTTP."""

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"\x00\xff\xfeTHIS IS NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()

    async with raw_server(garbage) as target:
        yield target


@pytest.fixture
async def banner_target() -> AsyncIterator[Target]:
    """Greets with an SSH banner, then keeps the connection open."""

    async def banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.6 pipeline-test\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    async with raw_server(banner) as target:
        yield target


@pytest.fixture
async def silent_target() -> AsyncIterator[Target]:
    """Accepts and says nothing."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    async with raw_server(silent) as target:
        yield target


@pytest.fixture
def closed_port() -> int:
    """A port that was just bound and released on 127.0.0.1: nothing listens there."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]
