"""Per-IP rate limits: exact moving windows in process memory, or on the `limits` library's async
Redis storage shared by replicas (with the in-memory windows as the fallback when Redis is away).

The limit is chosen by route group (health, metrics, default). The key is the peer address; a
forwarded header is believed only when the peer itself is a trusted proxy, and then the rightmost
address that is not a trusted proxy is used (the leftmost is whatever the client claims). An IPv6
client is keyed by its /64 (one subscriber's LAN: it can pick any of 2^64 addresses in it), an IPv4
one (also seen as ``::ffff:a.b.c.d``) by its address (``client_key``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import time

import orjson
from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from starlette.types import Scope, Send

from app.api.ratelimit_memory import MemoryWindows
from app.config.settings import RateLimitSection
from app.core.errors import envelope
from app.observability.metrics import GuardMetrics

log = logging.getLogger("pipeline_guard.ratelimit")

HEALTH_PATHS = ("/health", "/ready", "/metrics")
METRICS_PREFIXES = ("/api/v1/metrics",)
UNLIMITED_PREFIXES = ("/static/", "/docs", "/redoc", "/openapi.json")


class TrustedProxies:
    CACHE_SIZE = 4096  # peers remembered; past that the cache starts over (it is only a shortcut)

    def __init__(self, entries: list[str]):
        self.any = "*" in entries
        self.networks = [ipaddress.ip_network(e, strict=False) for e in entries if e != "*"]
        self._verdicts: dict[str, bool] = {}

    def trusts(self, address: str) -> bool:
        if self.any:
            return True
        if not self.networks:
            return False
        verdict = self._verdicts.get(address)
        if verdict is None:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                verdict = False
            else:
                # A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d; they match IPv4 entries.
                if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                    ip = ip.ipv4_mapped
                verdict = any(ip.version == net.version and ip in net for net in self.networks)
            if len(self._verdicts) >= self.CACHE_SIZE:
                self._verdicts.clear()
            self._verdicts[address] = verdict
        return verdict


def client_address(scope: Scope, proxies: TrustedProxies) -> str:
    client = scope.get("client")
    peer = client[0] if client else "unknown"
    if not proxies.trusts(peer):
        return peer
    # Every X-Forwarded-For line, in order (RFC 9110 5.3): a proxy that adds its own line (HAProxy's
    # ``option forwardfor``) puts the address it saw after whatever line the client sent.
    hops: list[str] = [
        hop.strip()
        for name, value in scope.get("headers", [])
        if name == b"x-forwarded-for"
        for hop in value.decode("latin-1").split(",")
        if hop.strip()
    ]
    for hop in reversed(hops):
        if not proxies.trusts(hop):
            return hop
    return hops[0] if hops else peer


IPV6_CLIENT_PREFIX = 64  # a host picks its own interface id (RFC 4941 privacy addresses) in its /64


def rate_key(address: str) -> str:
    """What limits and the login throttle count under for ``address``: an IPv6 address's /64, an
    IPv4 address itself (mapped ``::ffff:a.b.c.d`` too); anything else (a unix socket's name) as is."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # no zone: fe80::1%eth0 is one link's host
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_CLIENT_PREFIX), strict=False))
    return str(ip)


def client_key(scope: Scope, proxies: TrustedProxies) -> str:
    """The rate-limit and login-throttle key of the request's client (``client_address``'s prefix)."""
    return rate_key(client_address(scope, proxies))


def route_group(path: str) -> str | None:
    if path.startswith(UNLIMITED_PREFIXES):
        return None
    if path in HEALTH_PATHS:
        return "health"
    if path.startswith(METRICS_PREFIXES):
        return "metrics"
    return "default"


class RateLimiter:
    """Moving-window limits, in memory (``memory://``) or on the async storage of the `limits` library
    (Redis): nothing here blocks the event loop. A shared storage that fails or does not answer within
    ``STORAGE_TIMEOUT_S`` puts the limiter in fallback: limits are then enforced per process in memory
    (never switched off), the outage is logged once, counted and shown as a gauge, and the shared
    storage is probed again in the background every ``RETRY_INTERVAL_S`` until it answers."""

    STORAGE_TIMEOUT_S = 0.5
    RETRY_INTERVAL_S = 5.0

    def __init__(
        self,
        config: RateLimitSection,
        trusted_proxies: list[str],
        *,
        metrics: GuardMetrics | None = None,
        login_limit: str | None = None,
    ) -> None:
        self.enabled = config.enabled
        self.proxies = TrustedProxies(trusted_proxies)
        self.limits = {
            "health": parse(config.health),
            "metrics": parse(config.metrics),
            "default": parse(config.default),
        }
        if login_limit:
            self.limits["login"] = parse(login_limit)
        self.storage_uri = config.storage
        self.uses_shared_storage = not self.storage_uri.startswith("memory")
        self.metrics = metrics
        self.memory = MemoryWindows()
        self._shared: MovingWindowRateLimiter | None = None  # built on first use, inside the event loop
        self.outage_since: float | None = None
        self._last_probe = 0.0
        self._probe: asyncio.Task[None] | None = None
        self.rejections = 0

    @property
    def in_fallback(self) -> bool:
        return self.outage_since is not None

    def _shared_limiter(self) -> MovingWindowRateLimiter:
        if self._shared is None:
            uri = self.storage_uri if self.storage_uri.startswith("async+") else f"async+{self.storage_uri}"
            options: dict[str, float | str | bool] = {}
            if "redis" in uri:
                # The redis client's own socket timeouts back up the asyncio deadline below.
                options = {
                    "implementation": "redispy",
                    "socket_timeout": self.STORAGE_TIMEOUT_S,
                    "socket_connect_timeout": self.STORAGE_TIMEOUT_S,
                }
            self._shared = MovingWindowRateLimiter(storage_from_string(uri, **options))
        return self._shared

    async def check(self, group: str, key: str) -> float | None:
        """Count one request; return seconds to wait when over the limit, else None."""
        limit = self.limits[group]
        if self.uses_shared_storage and not self.in_fallback:
            try:
                async with asyncio.timeout(self.STORAGE_TIMEOUT_S):
                    return self._counted(await self._shared_hit(limit, group, key))
            except Exception as exc:  # noqa: BLE001 - any storage failure: enforce in memory instead
                self._enter_fallback(exc)
        elif self.in_fallback:
            self._maybe_probe()
        return self._counted(self.memory.hit(limit, group, key))

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
        self.memory.hit(limit, group, key)

    async def over_limit(self, group: str, key: str) -> bool:
        """Whether ``key`` has used up ``group``'s budget, without counting a request."""
        limit = self.limits[group]
        if self.uses_shared_storage and not self.in_fallback:
            try:
                async with asyncio.timeout(self.STORAGE_TIMEOUT_S):
                    return not await self._shared_limiter().test(limit, group, key)
            except Exception as exc:  # noqa: BLE001
                self._enter_fallback(exc)
        return self.memory.exhausted(limit, group, key)

    async def _shared_hit(self, limit: RateLimitItem, group: str, key: str) -> float | None:
        limiter = self._shared_limiter()
        if await limiter.hit(limit, group, key):
            return None
        reset_at, _remaining = await limiter.get_window_stats(limit, group, key)
        return reset_at - time.time()

    def _counted(self, wait: float | None) -> float | None:
        if wait is None:
            return None
        self.rejections += 1
        return max(1.0, wait)

    def _enter_fallback(self, exc: BaseException) -> None:
        if self.metrics is not None:
            self.metrics.ratelimit_storage_errors.inc()
        if self.in_fallback:
            return
        self.outage_since = self._last_probe = time.monotonic()
        if self.metrics is not None:
            self.metrics.ratelimit_fallback.set(1)
        # Once per outage, without a traceback per request.
        log.warning(
            "rate-limit storage %s unavailable (%s); enforcing limits in memory per process until it "
            "answers again",
            _safe_uri(self.storage_uri),
            type(exc).__name__ or "timeout",
        )

    def _maybe_probe(self) -> None:
        now = time.monotonic()
        if (
            self._probe is not None and not self._probe.done()
        ) or now - self._last_probe < self.RETRY_INTERVAL_S:
            return
        self._last_probe = now
        self._probe = asyncio.get_running_loop().create_task(
            self._probe_shared(), name="ratelimit-storage-probe"
        )

    async def _probe_shared(self) -> None:
        try:
            async with asyncio.timeout(self.STORAGE_TIMEOUT_S * 4):
                healthy = await self._shared_limiter().storage.check()
        except Exception:  # noqa: BLE001 - still away
            healthy = False
        if healthy and self.in_fallback:
            log.warning(
                "rate-limit storage %s answers again after %.0f s; shared limits restored",
                _safe_uri(self.storage_uri),
                time.monotonic() - (self.outage_since or 0.0),
            )
            self.outage_since = None
            if self.metrics is not None:
                self.metrics.ratelimit_fallback.set(0)

    async def reset(self) -> None:
        self.memory.reset()
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


async def send_rate_limited(send: Send, limiter: RateLimiter, group: str, wait: float) -> None:
    """The 429 envelope, with Retry-After in whole seconds."""
    retry_after = str(math.ceil(wait))
    limit = str(limiter.limits[group])
    body = orjson.dumps(
        envelope(
            "rate_limited",
            f"rate limit exceeded ({limit}); retry in {retry_after}s",
            {"limit": limit, "retry_after": int(retry_after)},
        )
    )
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"retry-after", retry_after.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
