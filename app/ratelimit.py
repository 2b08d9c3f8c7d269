"""Per-IP rate limits on slowapi's Limiter (the `limits` storage: memory or Redis).

The limit is chosen by route group (health, metrics, default). The key is the peer address; a
forwarded header is believed only when the peer itself is a trusted proxy, and then the rightmost
address that is not a trusted proxy is used (the leftmost is whatever the client claims).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time

import orjson
from limits import parse
from slowapi import Limiter
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import RateLimitSection
from app.errors import envelope

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
    def __init__(self, config: RateLimitSection, trusted_proxies: list[str]):
        self.enabled = config.enabled
        self.proxies = TrustedProxies(trusted_proxies)
        self.limits = {"health": parse(config.health), "metrics": parse(config.metrics), "default": parse(config.default)}
        self.slowapi = Limiter(
            key_func=lambda request: "unused",
            storage_uri=config.storage,
            strategy="moving-window",
            in_memory_fallback_enabled=config.storage.startswith("redis"),
        )
        self.rejections = 0

    def check(self, group: str, key: str) -> float | None:
        """Count one request; return seconds to wait when over the limit, else None."""
        limit = self.limits[group]
        strategy = self.slowapi.limiter
        try:
            if strategy.hit(limit, group, key):
                return None
            reset_at, _remaining = strategy.get_window_stats(limit, group, key)
        except Exception:  # a broken limiter storage must not take the API down
            log.warning("rate-limit storage unavailable; letting the request through", exc_info=True)
            return None
        self.rejections += 1
        return max(1.0, reset_at - time.time())

    def reset(self) -> None:
        self.slowapi.reset()


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
        wait = limiter.check(group, client_address(scope, limiter.proxies))
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
