"""Per-IP rate limits on the `limits` library's async storage (memory, or Redis shared by replicas).

The limit is chosen by route group (health, metrics, default). The key is the peer address; a
forwarded header is believed only when the peer itself is a trusted proxy, and then the rightmost
address that is not a trusted proxy is used (the leftmost is whatever the client claims).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import time

import orjson
from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config.settings import RateLimitSection
from app.core.errors import envelope

log = logging.getLogger("pipeline_guard.ratelimit")

HEALTH_PATHS = ("/health", "/ready", "/metrics")
METRICS_PREFIXES = ("/api/v1/metrics",)
UNLIMITED_PREFIXES = ("/static/", "/docs", "/redoc", "/openapi.json")


class TrustedProxies:
    def __init__(self, entries: list[str]):
        self.any = "*" in entries
        self.networks = [ipaddress.ip_network(e, strict=False) for e in entries if e != "*"]

    def trusts(self, address: str) -> bool:
        if self.any:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)


def client_address(scope: Scope, proxies: TrustedProxies) -> str:
    client = scope.get("client")
    peer = client[0] if client else "unknown"
    if not proxies.trusts(peer):
        return peer
    for name, value in scope.get("headers", []):
        if name == b"x-forwarded-for":
            hops = [h.strip() for h in value.decode("latin-1").split(",") if h.strip()]
            for hop in reversed(hops):
                if not proxies.trusts(hop):
                    return hop
            return hops[0] if hops else peer
    return peer


def route_group(path: str) -> str | None:
    if path.startswith(UNLIMITED_PREFIXES):
        return None
    if path in HEALTH_PATHS:
        return "health"
    if path.startswith(METRICS_PREFIXES):
        return "metrics"
    return "default"


class RateLimiter:
    """Moving-window limits on the async storage of the `limits` library: nothing here blocks the
    event loop. A shared storage (Redis) that fails or does not answer within ``STORAGE_TIMEOUT_S``
    puts the limiter in fallback: limits are then enforced per process in memory (never switched
    off), the outage is logged once, counted and shown as a gauge, and the shared storage is probed
    again in the background every ``RETRY_INTERVAL_S`` until it answers."""

    STORAGE_TIMEOUT_S = 0.5
    RETRY_INTERVAL_S = 5.0

    def __init__(self, config: RateLimitSection, trusted_proxies: list[str], *, metrics=None,
                 login_limit: str | None = None):
        self.enabled = config.enabled
        self.proxies = TrustedProxies(trusted_proxies)
        self.limits = {"health": parse(config.health), "metrics": parse(config.metrics), "default": parse(config.default)}
        if login_limit:
            self.limits["login"] = parse(login_limit)
        self.storage_uri = config.storage
        self.metrics = metrics
        self.memory = MovingWindowRateLimiter(MemoryStorage())
        self._shared: MovingWindowRateLimiter | None = None  # built on first use, inside the event loop
        self.outage_since: float | None = None
        self._last_probe = 0.0
        self._probe: asyncio.Task | None = None
        self.rejections = 0

    @property
    def uses_shared_storage(self) -> bool:
        return not self.storage_uri.startswith("memory")

    @property
    def in_fallback(self) -> bool:
        return self.outage_since is not None

    def _shared_limiter(self) -> MovingWindowRateLimiter:
        if self._shared is None:
            uri = self.storage_uri if self.storage_uri.startswith("async+") else f"async+{self.storage_uri}"
            options = {}
            if "redis" in uri:
                # The redis client's own socket timeouts back up the asyncio deadline below.
                options = {"implementation": "redispy", "socket_timeout": self.STORAGE_TIMEOUT_S,
                           "socket_connect_timeout": self.STORAGE_TIMEOUT_S}
            self._shared = MovingWindowRateLimiter(storage_from_string(uri, **options))
        return self._shared

    async def check(self, group: str, key: str) -> float | None:
        """Count one request; return seconds to wait when over the limit, else None."""
        limit = self.limits[group]
        if self.uses_shared_storage and not self.in_fallback:
            try:
                async with asyncio.timeout(self.STORAGE_TIMEOUT_S):
                    return self._verdict(limit, *await self._hit(self._shared_limiter(), limit, group, key))
            except Exception as exc:  # noqa: BLE001 - any storage failure: enforce in memory instead
                self._enter_fallback(exc)
        elif self.in_fallback:
            self._maybe_probe()
        return self._verdict(limit, *await self._hit(self.memory, limit, group, key))

    async def count(self, group: str, key: str) -> None:
        """Count one event against ``group``'s budget (login failures); never a rejection."""
        limit = self.limits[group]
        if self.uses_shared_storage and not self.in_fallback:
            try:
                async with asyncio.timeout(self.STORAGE_TIMEOUT_S):
                    await self._shared_limiter().hit(limit, group, key)
                    return
            except Exception as exc:  # noqa: BLE001
                self._enter_fallback(exc)
        await self.memory.hit(limit, group, key)

    async def over_limit(self, group: str, key: str) -> bool:
        """Whether ``key`` has used up ``group``'s budget, without counting a request."""
        limit = self.limits[group]
        limiter = self.memory
        if self.uses_shared_storage and not self.in_fallback:
            try:
                async with asyncio.timeout(self.STORAGE_TIMEOUT_S):
                    return not await self._shared_limiter().test(limit, group, key)
            except Exception as exc:  # noqa: BLE001
                self._enter_fallback(exc)
        return not await limiter.test(limit, group, key)

    @staticmethod
    async def _hit(limiter: MovingWindowRateLimiter, limit, group: str, key: str) -> tuple[bool, float]:
        if await limiter.hit(limit, group, key):
            return True, 0.0
        reset_at, _remaining = await limiter.get_window_stats(limit, group, key)
        return False, reset_at

    def _verdict(self, limit, allowed: bool, reset_at: float) -> float | None:
        if allowed:
            return None
        self.rejections += 1
        return max(1.0, reset_at - time.time())

    def _enter_fallback(self, exc: BaseException) -> None:
        if self.metrics is not None:
            self.metrics.ratelimit_storage_errors.inc()
        if self.in_fallback:
            return
        self.outage_since = self._last_probe = time.monotonic()
        if self.metrics is not None:
            self.metrics.ratelimit_fallback.set(1)
        # Once per outage, without a traceback per request.
        log.warning("rate-limit storage %s unavailable (%s); enforcing limits in memory per process until it "
                    "answers again", _safe_uri(self.storage_uri), type(exc).__name__ or "timeout")

    def _maybe_probe(self) -> None:
        now = time.monotonic()
        if (self._probe is not None and not self._probe.done()) or now - self._last_probe < self.RETRY_INTERVAL_S:
            return
        self._last_probe = now
        self._probe = asyncio.get_running_loop().create_task(self._probe_shared(), name="ratelimit-storage-probe")

    async def _probe_shared(self) -> None:
        try:
            async with asyncio.timeout(self.STORAGE_TIMEOUT_S * 4):
                healthy = await self._shared_limiter().storage.check()
        except Exception:  # noqa: BLE001 - still away
            healthy = False
        if healthy and self.in_fallback:
            log.warning("rate-limit storage %s answers again after %.0f s; shared limits restored",
                        _safe_uri(self.storage_uri), time.monotonic() - (self.outage_since or 0.0))
            self.outage_since = None
            if self.metrics is not None:
                self.metrics.ratelimit_fallback.set(0)

    async def reset(self) -> None:
        await self.memory.storage.reset()
        if self.uses_shared_storage:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self._shared_limiter().storage.reset()

    async def aclose(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(BaseException):
                await self._probe


def _safe_uri(uri: str) -> str:
    from app.outbound.ssrf import redact_url

    return redact_url(uri.replace("async+", "", 1)) if "://" in uri else uri


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, limiter_getter, on_reject=None):
        self.app = app
        self.limiter_getter = limiter_getter
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limiter: RateLimiter | None = self.limiter_getter()
        if scope["type"] != "http" or limiter is None or not limiter.enabled:
            await self.app(scope, receive, send)
            return
        group = route_group(scope["path"])
        if group is None:
            await self.app(scope, receive, send)
            return
        wait = await limiter.check(group, client_address(scope, limiter.proxies))
        if wait is None:
            await self.app(scope, receive, send)
            return
        if self.on_reject:
            self.on_reject(group)
        retry_after = str(math.ceil(wait))
        body = orjson.dumps(
            envelope("rate_limited", f"rate limit exceeded ({limiter.limits[group]}); retry in {retry_after}s",
                     {"limit": str(limiter.limits[group]), "retry_after": int(retry_after)})
        )
        await send({
            "type": "http.response.start",
            "status": 429,
            "headers": [(b"content-type", b"application/json"), (b"retry-after", retry_after.encode()),
                        (b"content-length", str(len(body)).encode())],
        })
        await send({"type": "http.response.body", "body": body})
