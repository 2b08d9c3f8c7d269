"""HTTP metrics for Prometheus: the series prometheus-fastapi-instrumentator's defaults export (same
names, labels and buckets, so dashboards and recording rules keep working), at a fraction of the
cost per request.

The instrumentator finds a request's route template by matching the path against every route
again after the response (13 % of a /health request here) and builds an ``Info`` object and five
label lookups per request. FastAPI already records the matched route in ``scope["route"]``; the
recorder reads it there, and the numbers are kept per (method, status, handler) without locks.
"""

from __future__ import annotations

import re
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString
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
    """The five series, kept as plain numbers per label values and turned into samples when the
    registry is collected (a /metrics scrape).

    prometheus_client's metric objects take a lock per value and check observability per call: nine
    locked increments per request, a tenth of a GET /health. Requests are recorded and scrapes are
    collected on the event loop's thread only, so plain arithmetic is exact here; the exposition is
    the one the library's Counter, Summary and Histogram give (``_total``/``_count``/``_sum``/
    ``_bucket`` and ``_created``, unless the library's created series are disabled).
    """

    def __init__(self, registry: CollectorRegistry):
        # (method, status class, handler) -> (count and created, in-size, out-size, low-res histogram)
        self._series: dict[tuple[str, str, str], tuple[list[float], list[float], list[float], _Buckets]] = {}
        self._in_size: dict[str, list[float]] = {}  # handler -> [count, sum, created]
        self._out_size: dict[str, list[float]] = {}
        self._lowr: dict[tuple[str, str], _Buckets] = {}
        self._highr = _Buckets(len(HIGHR_BUCKETS))
        registry.register(self)

    def observe(
        self, method: str, status: int, handler: str, duration: float, in_size: int, out_size: int
    ) -> None:
        key = (method, f"{status // 100}xx", handler)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = self._bind(key)
        total, in_sum, out_sum, lowr = series
        total[0] += 1
        in_sum[0] += 1
        in_sum[1] += in_size
        out_sum[0] += 1
        out_sum[1] += out_size
        self._highr.observe(bisect_left(HIGHR_BUCKETS, duration), duration)
        lowr.observe(bisect_left(LOWR_BUCKETS, duration), duration)

    def _bind(self, key: tuple[str, str, str]) -> tuple[list[float], list[float], list[float], _Buckets]:
        method, _, handler = key
        now = time.time()
        in_sum = self._in_size.setdefault(handler, [0.0, 0.0, now])
        out_sum = self._out_size.setdefault(handler, [0.0, 0.0, now])
        lowr = self._lowr.get((method, handler))
        if lowr is None:
            lowr = self._lowr[(method, handler)] = _Buckets(len(LOWR_BUCKETS))
        return [0.0, now], in_sum, out_sum, lowr

    def describe(self) -> list[Metric]:
        return self._families()

    def collect(self) -> list[Metric]:
        created = getattr(prometheus_metrics, "_use_created", True)
        total, in_size, out_size, highr, lowr = self._families()
        for (method, status, handler), (requests, *_) in self._series.items():
            labels = {"method": method, "status": status, "handler": handler}
            total.add_sample("http_requests_total", labels, requests[0])
            if created:
                total.add_sample("http_requests_created", labels, requests[1])
        for family, sums in ((in_size, self._in_size), (out_size, self._out_size)):
            for handler, (count, total_size, since) in sums.items():
                labels = {"handler": handler}
                family.add_sample(family.name + "_count", labels, count)
                family.add_sample(family.name + "_sum", labels, total_size)
                if created:
                    family.add_sample(family.name + "_created", labels, since)
        self._highr.samples(highr, {}, HIGHR_BUCKETS, created)
        for (method, handler), buckets in self._lowr.items():
            buckets.samples(lowr, {"method": method, "handler": handler}, LOWR_BUCKETS, created)
        return [total, in_size, out_size, highr, lowr]

    @staticmethod
    def _families() -> list[Metric]:
        return [
            Metric("http_requests", "Total number of requests by method, status and handler.", "counter"),
            Metric(
                "http_request_size_bytes",
                "Content length of incoming requests by handler. "
                "Only value of header is respected. Otherwise ignored. No percentile calculated. ",
                "summary",
            ),
            Metric(
                "http_response_size_bytes",
                "Content length of outgoing responses by handler. "
                "Only value of header is respected. Otherwise ignored. No percentile calculated. ",
                "summary",
            ),
            Metric(
                "http_request_duration_highr_seconds",
                "Latency with many buckets but no API "
                "specific labels. Made for more accurate percentile calculations. ",
                "histogram",
            ),
            Metric(
                "http_request_duration_seconds",
                "Latency with only few buckets by handler. Made to "
                "be only used if aggregation by handler is important. ",
                "histogram",
            ),
        ]


class _Buckets:
    """One histogram child: the count per bucket (not cumulative), the sum, the creation time."""

    __slots__ = ("counts", "created", "total")

    def __init__(self, n: int) -> None:
        self.counts = [0] * n
        self.total = 0.0
        self.created = time.time()

    def observe(self, bucket: int, value: float) -> None:
        self.counts[bucket] += 1
        self.total += value

    def samples(
        self, family: Metric, labels: dict[str, str], bounds: tuple[float, ...], created: bool
    ) -> None:
        cumulative = 0.0
        for bound, count in zip(bounds, self.counts, strict=True):
            cumulative += count
            family.add_sample(family.name + "_bucket", {**labels, "le": floatToGoString(bound)}, cumulative)
        family.add_sample(family.name + "_count", labels, cumulative)
        family.add_sample(family.name + "_sum", labels, self.total)
        if created:
            family.add_sample(family.name + "_created", labels, self.created)


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
