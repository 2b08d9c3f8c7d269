"""A real HTTP receiver on 127.0.0.1 whose behaviour the test scripts (fail, hang, 429, recover)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections import Counter, deque
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from tests.conftest import make_settings

HOOK_SECRET = "hmac-secret-0123456789abcdef"


@dataclass
class Receiver:
    url: str = ""
    # Behaviours consumed one per request; when empty, `default` applies.
    script: deque = field(default_factory=deque)
    default: str = "ok"
    requests: list = field(default_factory=list)
    accepted: Counter = field(default_factory=Counter)  # idempotency key -> times answered 2xx
    got_request: asyncio.Event = field(default_factory=asyncio.Event)
    secret: str = HOOK_SECRET

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        key = request.headers.get("Idempotency-Key", "")
        behaviour = self.script.popleft() if self.script else self.default
        self.requests.append(
            {
                "path": request.path,
                "headers": dict(request.headers),
                "body": body,
                "key": key,
                "behaviour": behaviour,
                "at": asyncio.get_running_loop().time(),
            }
        )
        self.got_request.set()
        if behaviour == "hang":
            await asyncio.sleep(30)
            return web.Response(status=503)
        if behaviour == "fail":
            return web.Response(status=500, text="boom")
        if behaviour == "429":
            return web.Response(status=429, headers={"Retry-After": "1"})
        if key and self.accepted[key]:
            # Idempotent receiver: a repeat of an already processed key is acknowledged, not processed.
            return web.Response(status=200, text="duplicate")
        if key:
            self.accepted[key] += 1
        return web.Response(status=200, text="ok")

    def verify(self, request: dict) -> bool:
        expected = "sha256=" + hmac.new(self.secret.encode(), request["body"], hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, request["headers"].get("X-Pipeline-Guard-Signature", ""))


@pytest.fixture
async def receiver():
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", rec.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    rec.url = f"http://127.0.0.1:{port}"
    yield rec
    await runner.cleanup()


FAST = {
    "outbox_interval": 0.05,
    "retry_base": 0.05,
    "retry_max": 2,
    "request_timeout": 0.5,
    "claim_lease": 30,
    "stop_timeout": 0.2,
    "escalation_interval": 0.05,
    "cooldown": 60,
}


@pytest.fixture
def notify_settings(db_url, tmp_path):
    return make_settings(db_url, tmp_path, security={"ssrf_allowlist": ["127.0.0.1/32"]}, alerting=FAST)
