"""Per-IP rate limits: groups, Retry-After, and who may set X-Forwarded-For."""

from __future__ import annotations

import httpx

from app.api.ratelimit import TrustedProxies, client_address, route_group
from tests.conftest import make_settings, running_guard


def _scope(peer: str, xff: str | None = None) -> dict:
    headers = [(b"x-forwarded-for", xff.encode())] if xff else []
    return {"type": "http", "client": (peer, 1234), "headers": headers}


def test_forwarded_header_ignored_from_untrusted_peer():
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert client_address(_scope("203.0.113.9", "1.2.3.4"), proxies) == "203.0.113.9"


def test_forwarded_header_used_from_trusted_proxy_rightmost_untrusted_hop():
    proxies = TrustedProxies(["10.0.0.0/8"])
    # The client claims 6.6.6.6; the proxy chain appended the real address 198.51.100.7.
    assert client_address(_scope("10.1.2.3", "6.6.6.6, 198.51.100.7, 10.9.9.9"), proxies) == "198.51.100.7"


def test_route_groups():
    assert route_group("/health") == "health"
    assert route_group("/metrics") == "health"
    assert route_group("/api/v1/metrics/batch") == "metrics"
    assert route_group("/api/v1/components") == "default"
    assert route_group("/static/swagger-ui/swagger-ui.css") is None


async def test_429_and_spoofed_forwarded_for_does_not_reset_the_budget(db_url, tmp_path):
    settings = make_settings(
        db_url, tmp_path, security={"rate_limiting": {"enabled": True, "default": "3/minute"}}
    )
    async with running_guard(settings) as guard:
        statuses = []
        for i in range(5):
            r = await guard.client.get("/api/v1/auth/me", headers={"X-Forwarded-For": f"10.0.0.{i}"})
            statuses.append(r.status_code)
        assert statuses == [401, 401, 401, 429, 429]
        assert int(r.headers["retry-after"]) > 0
        assert r.json()["error"]["type"] == "rate_limited"
        # A different peer has its own budget.
        transport = httpx.ASGITransport(app=guard.app, client=("127.0.0.2", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
            assert (await other.get("/api/v1/auth/me")).status_code == 401
        # Health has its own, larger budget.
        assert (await guard.client.get("/health")).status_code == 200
        assert guard.runtime.limiter.rejections == 2


async def test_trusted_proxy_forwarded_for_separates_clients(db_url, tmp_path):
    settings = make_settings(
        db_url,
        tmp_path,
        security={
            "trusted_proxies": ["127.0.0.1/32"],
            "rate_limiting": {"enabled": True, "default": "2/minute"},
        },
    )
    async with running_guard(settings) as guard:
        for client_ip in ("198.51.100.1", "198.51.100.2"):
            for _ in range(2):
                r = await guard.client.get("/api/v1/auth/me", headers={"X-Forwarded-For": client_ip})
                assert r.status_code == 401
        r = await guard.client.get("/api/v1/auth/me", headers={"X-Forwarded-For": "198.51.100.1"})
        assert r.status_code == 429


async def test_redis_storage_shares_the_budget_between_apps(db_url, tmp_path):
    import uuid

    import redis

    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_timeout=1).ping()
    except redis.exceptions.ConnectionError:
        import pytest

        pytest.skip("no Redis on 127.0.0.1:6379")
    db_index = 0
    settings = make_settings(
        db_url,
        tmp_path,
        security={
            "rate_limiting": {
                "enabled": True,
                "default": "3/minute",
                "storage": f"redis://127.0.0.1:6379/{db_index}",
            }
        },
    )
    peer = f"127.0.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"
    other = settings
    if db_url.startswith("sqlite"):
        # SQLite mode is single-replica (a lock file refuses a second app on the same file): the
        # second app gets its own copy; the rate-limit budget is shared through Redis either way.
        import shutil

        copy = tmp_path / "second.db"
        shutil.copy(db_url.split("///", 1)[1], copy)
        other = settings.model_copy(update={"database_url": f"sqlite+aiosqlite:///{copy}"})
    async with running_guard(settings) as a, running_guard(other) as b:
        await a.runtime.limiter.reset()
        codes = []
        for client in (a, b, a, b):
            transport = httpx.ASGITransport(app=client.app, client=(peer, 1))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                codes.append((await c.get("/api/v1/auth/me")).status_code)
        assert codes == [401, 401, 401, 429]
        await a.runtime.limiter.reset()


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_memory_windows_are_exact_moving_windows():
    from limits import parse

    from app.api.ratelimit_memory import MemoryWindows

    clock = _Clock()
    windows = MemoryWindows(clock)
    limit = parse("3/minute")
    for t in (0.0, 10.0, 20.0):
        clock.now = 1000.0 + t
        assert windows.hit(limit, "default", "a") is None
    clock.now = 1030.0
    assert windows.exhausted(limit, "default", "a")
    assert windows.hit(limit, "default", "a") == 30.0  # until the hit at t=0 leaves the window
    assert windows.hit(limit, "other", "a") is None and windows.hit(limit, "default", "b") is None
    clock.now = 1059.999
    assert windows.hit(limit, "default", "a") is not None  # refused hits were not counted, the first still is
    clock.now = 1060.0
    assert not windows.exhausted(limit, "default", "a")
    assert windows.hit(limit, "default", "a") is None  # one slot freed: exactly one more
    assert windows.hit(limit, "default", "a") == 10.0


def test_memory_windows_forget_idle_keys_without_a_background_thread():
    import threading

    from limits import parse

    from app.api.ratelimit_memory import MemoryWindows

    threads = threading.active_count()
    clock = _Clock()
    windows = MemoryWindows(clock)
    limit = parse("5 per 10 seconds")
    for i in range(100):
        windows.hit(limit, "login", f"user|10.0.0.{i}")
    assert len(windows) == 100 and threading.active_count() == threads
    clock.now += MemoryWindows.SWEEP_INTERVAL_S
    windows.hit(limit, "login", "fresh")
    assert len(windows) == 1


async def test_memory_limiter_answers_with_the_configured_limit(db_url, tmp_path):
    settings = make_settings(
        db_url, tmp_path, security={"rate_limiting": {"enabled": True, "health": "4/minute"}}
    )
    async with running_guard(settings) as guard:
        codes = [(await guard.client.get("/health")).status_code for _ in range(6)]
        assert codes == [200, 200, 200, 200, 429, 429]
        r = await guard.client.get("/health")
        assert r.json()["error"]["details"]["limit"] == "4 per 1 minute"
        assert 0 < int(r.headers["retry-after"]) <= 60 and r.headers["x-request-id"]
        # /metrics shares the health budget: read the refusals from the registry itself.
        labels = {"handler": "/health", "method": "GET", "status": "4xx"}
        assert guard.runtime.metrics.registry.get_sample_value("http_requests_total", labels) == 3
