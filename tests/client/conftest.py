"""Fixtures for the client SDK and HTTP CLI tests: a real guard and a scriptable stub on loopback."""

from __future__ import annotations

import json
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

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
class StubServer:
    """A tiny ASGI app: answers scripted responses per (method, path), records every request."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    scripts: dict[tuple[str, str], deque] = field(default_factory=lambda: defaultdict(deque))

    def script(self, method: str, path: str, *responses: tuple[int, Any] | tuple[int, Any, dict[str, str]]) -> None:
        self.scripts[(method, path)].extend(responses)

    def calls(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        return [r for r in self.requests if (method is None or r.method == method) and (path is None or r.path == path)]

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
        self.requests.append(Recorded(scope["method"], scope["path"], parse_qsl(scope["query_string"].decode()),
                                      headers, parsed))
        queue = self.scripts.get((scope["method"], scope["path"]))
        status, payload, extra = 200, {"ok": True}, {}
        if queue:
            item = queue.popleft()
            status, payload = item[0], item[1]
            extra = item[2] if len(item) > 2 else {}
        if scope["path"] == "/api/v1/auth/token" and not queue and status == 200 and payload == {"ok": True}:
            payload = {"access_token": "stub-token", "token_type": "bearer", "expires_in": 3600}
        data = json.dumps(payload).encode() if payload is not None else b""
        response_headers = [(b"content-type", b"application/json")] + [(k.encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": data})


@pytest.fixture
def stub():
    server = StubServer()
    with serve_app(server) as url:
        server.url = url
        yield server

