"""The scheduler's Prometheus side, kept off the probe hot path.

Per-probe counts and latencies are buffered and published once per flush (``inc(n)``, one histogram
update per bucket); the health gauges are touched only when a component's status changed; a removed
component's label sets are dropped so cardinality stays bounded.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

from app.checks.base import Outcome


class ProbeMetrics:
    def __init__(self, metrics: Any):
        self.metrics = metrics
        self._durations: dict[str, Any] = {}
        self._pending_counts: dict[
            tuple[str, str], int
        ] = {}  # (component, outcome) -> probes since the last flush
        self._pending_latencies: dict[str, list[float]] = {}  # kind -> latencies since the last flush
        self._published: dict[str, str] = {}  # component name -> status last exported
        self.health_dirty = False  # a component left the health map: recompute the percentage

    # --- per probe ---------------------------------------------------------------------------
    def count(self, entry: Any, outcome: Outcome, latency_s: float | None) -> None:
        """Count one probe of ``entry`` (its ``counters`` cache holds its label sets' keys)."""
        counters = entry.counters
        if counters is None:
            counters = entry.counters = {}
        key = counters.get(outcome)
        if key is None:
            key = counters[outcome] = (entry.name, outcome.value)
        pending = self._pending_counts
        pending[key] = pending.get(key, 0) + 1
        if latency_s is not None:
            latencies = self._pending_latencies.get(entry.kind)
            if latencies is None:
                latencies = self._pending_latencies[entry.kind] = []
            latencies.append(latency_s)

    # --- per flush ---------------------------------------------------------------------------
    def publish_counts(self) -> None:
        if not (self._pending_counts or self._pending_latencies):
            return
        counts, self._pending_counts = self._pending_counts, {}
        add = self.metrics.check_counts.add
        for key, n in counts.items():
            add(key, n)
        latencies, self._pending_latencies = self._pending_latencies, {}
        for kind, values in latencies.items():
            histogram = self._durations.get(kind)
            if histogram is None:
                histogram = self._durations[kind] = self.metrics.check_duration.labels(kind)
            observe_many(histogram, values)

    def publish_health(
        self, health: dict[str, str], items: Iterable[tuple[str, str]], *, full: bool, last_lag: float | None
    ) -> None:
        """Bring ``health`` (the /health map) and the gauges up to date with ``items`` (name, status);
        ``full`` means ``items`` is every component (the map was cleared)."""
        metrics, published = self.metrics, self._published
        gauges = metrics.component_gauges
        changed_any, self.health_dirty = full or self.health_dirty, False
        for name, status in items:
            if health.get(name) != status:
                health[name] = status
                changed_any = True
            if published.get(name) != status:
                published[name] = status
                gauges.set(name, status)
        if changed_any:  # only on a refresh or when a status changed in this flush
            counts = getattr(health, "counts", None)  # a HealthMap counts as it is written
            healthy = (
                counts["healthy"] if counts is not None else sum(1 for s in health.values() if s == "healthy")
            )
            metrics.health_percentage.set(100.0 * healthy / len(health) if health else 100.0)
        if last_lag is not None:
            metrics.scheduler_lag.set(last_lag)

    def forget(self, name: str) -> None:
        """Drop a removed component's label sets so cardinality stays bounded."""
        self.health_dirty = True
        self._published.pop(name, None)
        self.metrics.component_gauges.remove(name)
        self.metrics.check_counts.remove(name)


def observe_many(histogram: Any, values: list[float]) -> None:
    """`histogram.observe(v)` for each value, with one update per bucket touched instead of one
    locked update per value (prometheus_client's Histogram child; anything else: plain observe)."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values:
            histogram.observe(value)
        return
    counts = [0] * len(bounds)
    for value in values:
        counts[bisect_left(bounds, value)] += 1  # the first bucket with value <= bound, as observe()
    for i, n in enumerate(counts):
        if n:
            buckets[i].inc(n)
    total.inc(sum(values))
