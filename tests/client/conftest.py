"""Fixtures for the client SDK and HTTP CLI tests: a real guard, and a fault-injecting proxy in front of
it."""

from __future__ import annotations

import json
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from live_guard import serve_app, serve_guard


@pytest.fixture
def live(settings):
    """A real guard (uvicorn on 127.0.0.1) with an admin user; both dialects."""
    with serve_guard(settings) as guard:
        yield guard


@dataclass
class Recorded:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: Any


@dataclass
class FaultProxy:
    """A recording proxy in front of a real guard: scripted responses (faults: 500, 429, 503...) are
    answered per (method, path) in order; every other request goes to the real guard, whose answer is
    passed back. Nothing is accepted that the guard itself would refuse."""

    upstream: str
    url: str = ""
    token: str = ""
    requests: list[Recorded] = field(default_factory=list)
    scripts: dict[tuple[str, str], deque] = field(default_factory=lambda: defaultdict(deque))

    def script(
        self, method: str, path: str, *responses: tuple[int, Any] | tuple[int, Any, dict[str, str]]
    ) -> None:
        self.scripts[(method, path)].extend(responses)

    def calls(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and (path is None or r.path == path)
        ]

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if headers.get("content-type", "").startswith("application/json") and body:
            parsed = json.loads(body)
        elif body:
            parsed = dict(parse_qsl(body.decode()))
        else:
            parsed = None
        query = scope["query_string"].decode()
        self.requests.append(Recorded(scope["method"], scope["path"], parse_qsl(query), headers, parsed))
        queue = self.scripts.get((scope["method"], scope["path"]))
        if queue:
            item = queue.popleft()
            status, payload = item[0], item[1]
            extra = item[2] if len(item) > 2 else {}
            data = json.dumps(payload).encode() if payload is not None else b""
            response_headers = [
                (b"content-type", b"application/json"),
                *((k.encode(), v.encode()) for k, v in extra.items()),
            ]
        else:
            forwarded = {
                k: v for k, v in headers.items() if k not in ("host", "content-length", "connection")
            }
            async with httpx.AsyncClient(base_url=self.upstream, timeout=30) as client:
                answer = await client.request(
                    scope["method"],
                    scope["path"] + (f"?{query}" if query else ""),
                    content=body,
                    headers=forwarded,
                )
            status, data = answer.status_code, answer.content
            hop_by_hop = ("content-length", "transfer-encoding", "connection", "server", "date")
            response_headers = [
                (k.encode(), v.encode()) for k, v in answer.headers.items() if k.lower() not in hop_by_hop
            ]
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": data})


@pytest.fixture
def stub(live):
    """A FaultProxy in front of the real guard; ``stub.token`` is an admin token for it."""
    server = FaultProxy(upstream=live.url, token=live.token())
    with serve_app(server) as url:
        server.url = url
        yield server


@pytest.fixture
def receiver():
    """A webhook receiver on loopback: answers 200 to every POST and keeps the bodies."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.received = received
    server.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield server
    server.shutdown()
    server.server_close()
