"""Rate limits with a shared Redis that goes away: against a Redis that accepts and never answers,
and one that refuses, requests keep flowing (the event loop is never blocked), limits keep being
enforced in memory (login throttling included), the outage is logged once and shown in /metrics,
and the shared storage is used again once it answers. The Redis is the real one on
127.0.0.1:6379, reached through a loopback front that can forward, hang or refuse."""

from __future__ import annotations

import asyncio
import logging
import uuid

import httpx
import pytest
import redis

from tests.conftest import TEST_PASSWORD, make_settings, running_guard
from tests.security.pgfront import PgFront

REDIS = ("127.0.0.1", 6379)


@pytest.fixture
async def redis_front():
    try:
        redis.Redis(host=REDIS[0], port=REDIS[1], socket_timeout=2).ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.fail(f"the real Redis at {REDIS[0]}:{REDIS[1]} is needed: {exc}")
    front = PgFront(*REDIS)
    await front.start()
    try:
        yield front
    finally:
        await front.close()


def _peer() -> str:
    # A fresh address per run: the real Redis is shared with other test runs.
    n = uuid.uuid4().int
    return f"10.{n % 250}.{(n >> 8) % 250}.{(n >> 16) % 250 + 1}"


async def _burst(app, peer: str, path: str, n: int, **kwargs) -> list[int]:
    transport = httpx.ASGITransport(app=app, client=(peer, 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        async with asyncio.timeout(60):  # generous: a blocked loop would take minutes, not a deadline
            responses = await asyncio.gather(
                *(
                    client.request(kwargs.get("method", "GET"), path, data=kwargs.get("data"))
                    for _ in range(n)
                )
            )
    return [r.status_code for r in responses]


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


@pytest.mark.parametrize("outage", ["hang", "refuse"])
async def test_redis_outage_falls_back_to_memory_limits(db_url, tmp_path, redis_front, outage, caplog):
    caplog.set_level(logging.WARNING, logger="pipeline_guard.ratelimit")
    settings = make_settings(
        db_url,
        tmp_path,
        security={
            "rate_limiting": {
                "enabled": True,
                "default": "5/minute",
                "health": "1000/minute",
                "storage": f"redis://127.0.0.1:{redis_front.port}/0",
            }
        },
    )
    async with running_guard(settings) as guard:
        limiter = guard.runtime.limiter
        limiter.RETRY_INTERVAL_S = 0.2  # probe the shared storage often, so recovery shows quickly
        # While Redis is up, a loaded test machine must not pass for an outage (a burst split between
        # Redis and memory would count neither to the limit); the outage below has the real deadline.
        deadline, limiter.STORAGE_TIMEOUT_S = limiter.STORAGE_TIMEOUT_S, 10.0
        peer = _peer()
        # Shared storage up: the budget is counted in the real Redis.
        assert (await _burst(guard.app, peer, "/api/v1/auth/me", 6)).count(429) == 1
        assert not limiter.in_fallback

        limiter.STORAGE_TIMEOUT_S = deadline
        await redis_front.set_mode(outage)
        statuses = await _burst(guard.app, _peer(), "/health", 12)
        assert statuses == [200] * 12  # nobody waits for a Redis that never answers
        assert limiter.in_fallback
        # Still enforced, per process, from memory: the 6th request of a fresh client is refused.
        assert (await _burst(guard.app, _peer(), "/api/v1/auth/me", 6)).count(429) == 1
        # Login throttling too: the right password is refused after five wrong ones from one address.
        await guard.add_user("root", "admin")
        attacker = _peer()
        wrong = await _burst(
            guard.app,
            attacker,
            "/api/v1/auth/token",
            5,
            method="POST",
            data={"username": "root", "password": "guess-guess-guess"},
        )
        assert wrong == [401] * 5
        right = await _burst(
            guard.app,
            attacker,
            "/api/v1/auth/token",
            1,
            method="POST",
            data={"username": "root", "password": TEST_PASSWORD},
        )
        assert right in ([401], [429])  # throttled login, or the per-IP limit itself: never a token
        metrics = (await guard.client.get("/metrics")).text
        assert _metric(metrics, "pipeline_guard_ratelimit_fallback") == 1.0
        assert _metric(metrics, "pipeline_guard_ratelimit_storage_errors_total") >= 1.0
        outage_logs = [r for r in caplog.records if "unavailable" in r.getMessage()]
        assert len(outage_logs) == 1, [r.getMessage() for r in caplog.records]  # once per outage
        assert not any(r.exc_info for r in caplog.records)  # no traceback per request

        await redis_front.set_mode("forward")
        async with asyncio.timeout(60):
            while limiter.in_fallback:
                await _burst(guard.app, _peer(), "/health", 1)
                await asyncio.sleep(0.1)
        metrics = (await guard.client.get("/metrics")).text
        assert _metric(metrics, "pipeline_guard_ratelimit_fallback") == 0.0
        assert (await _burst(guard.app, _peer(), "/api/v1/auth/me", 6)).count(429) == 1
        assert any("answers again" in r.getMessage() for r in caplog.records)
