"""HTTP metrics for Prometheus: the series prometheus-fastapi-instrumentator's defaults export (same
names, labels and buckets, so dashboards and recording rules keep working), at a fraction of the
cost per request.

The instrumentator finds a request's route template by matching the path against every route
again after the response (13 % of a /health request here) and builds an ``Info`` object and five
label lookups per request. FastAPI already records the matched route in ``scope["route"]``; the
recorder reads it there, and caches the labelled children per (method, status, handler).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, Summary
from starlette.routing import Match
from starlette.types import Scope

HIGHR_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1,
    1.5,
    2,
    2.5,
    3,
    3.5,
    4,
    4.5,
    5,
    7.5,
    10,
    30,
    60,
    float("inf"),
)
LOWR_BUCKETS = (0.1, 0.5, 1, float("inf"))
UNTEMPLATED = "none"  # a path no route matched (the instrumentator's grouping of untemplated paths)


class HttpMetrics:
    """The five series, and the labelled children cached per label values."""

    def __init__(self, registry: CollectorRegistry):
        self.total = Counter(
            "http_requests_total",
            "Total number of requests by method, status and handler.",
            ["method", "status", "handler"],
            registry=registry,
        )
        self.in_size = Summary(
            "http_request_size_bytes",
            "Content length of incoming requests by handler. "
            "Only value of header is respected. Otherwise ignored. No percentile calculated. ",
            ["handler"],
            registry=registry,
        )
        self.out_size = Summary(
            "http_response_size_bytes",
            "Content length of outgoing responses by handler. "
            "Only value of header is respected. Otherwise ignored. No percentile calculated. ",
            ["handler"],
            registry=registry,
        )
        self.highr = Histogram(
            "http_request_duration_highr_seconds",
            "Latency with many buckets but no API "
            "specific labels. Made for more accurate percentile calculations. ",
            buckets=HIGHR_BUCKETS,
            registry=registry,
        )
        self.lowr = Histogram(
            "http_request_duration_seconds",
            "Latency with only few buckets by handler. Made to "
            "be only used if aggregation by handler is important. ",
            ["method", "handler"],
            buckets=LOWR_BUCKETS,
            registry=registry,
        )
        self._children: dict[tuple[str, str, str], tuple[Any, Any, Any, Any]] = {}

    def observe(
        self, method: str, status: int, handler: str, duration: float, in_size: int, out_size: int
    ) -> None:
        key = (method, f"{status // 100}xx", handler)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.total.labels(*key),
                self.in_size.labels(handler),
                self.out_size.labels(handler),
                self.lowr.labels(method, handler),
            )
        total, in_child, out_child, lowr = children
        total.inc()
        in_child.observe(in_size)
        out_child.observe(out_size)
        self.highr.observe(duration)
        lowr.observe(duration)


class HttpMetricsRecorder:
    """Records one finished request: its route template (the matched route's, else matched as the
    instrumentator did), unless the template is excluded. The edge middleware times the request."""

    def __init__(
        self, metrics: HttpMetrics, routes: Callable[[], Iterable[Any]], excluded: Iterable[str] = ()
    ):
        self.metrics = metrics
        self.routes = routes
        self.excluded = [re.compile(pattern) for pattern in excluded]
        self._excluded_cache: dict[str, bool] = {}

    def record(
        self,
        scope: Scope,
        status: int,
        duration: float,
        in_size: int,
        out_size: int,
        handler: str | None = None,
    ) -> None:
        """``handler``: the route template when the request was answered without routing."""
        if handler is None:
            handler = self._handler(scope)
        if not self._is_excluded(handler):
            self.metrics.observe(scope["method"], status, handler, duration, in_size, out_size)

    def _handler(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is not None:
            return route.path
        # Not routed (refused by a middleware first) or not an APIRoute (a mount such as /static):
        # match as the instrumentator did.
        return _match(self.routes(), scope) or UNTEMPLATED

    def _is_excluded(self, handler: str) -> bool:
        excluded = self._excluded_cache.get(handler)
        if excluded is None:
            excluded = any(pattern.search(handler) for pattern in self.excluded)
            if len(self._excluded_cache) < 10_000:
                self._excluded_cache[handler] = excluded
        return excluded


def _match(routes: Iterable[Any], scope: Scope) -> str | None:
    for candidate in routes:
        match, _ = candidate.matches(scope)
        if match != Match.FULL:
            continue
        path = getattr(candidate, "path", None)
        if path is not None:
            return path
        # An included router: its own routes carry the paths (FastAPI wraps it, keeping the original).
        inner = getattr(candidate, "routes", None) or getattr(
            getattr(candidate, "original_router", None), "routes", None
        )
        if inner is not None:
            return _match(inner, scope)
    return None
