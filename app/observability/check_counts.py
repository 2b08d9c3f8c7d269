"""`pipeline_guard_checks_total{component, outcome}`: probes run per component and outcome, counted in
one map and turned into samples when the registry is collected (a /metrics scrape).

prometheus_client's Counter keeps an object per label set (its value, a lock, its creation time, a
copy of the metric's description), about 690 bytes each: 14 MB of a 20,000-component guard's memory
for what is one number per component and outcome. The exposition is the Counter's: the same family,
a `_total` and a `_created` sample per label set, in the order the label sets were first counted (a
removed component's counted again goes last, with a new creation time).

Counts are added and scrapes collected on the event loop's thread; a collection copies the map first,
so one on another thread never iterates a map that changes under it.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.metrics_core import Metric

Key = tuple[str, str]  # (component, outcome)


class CheckCounts:
    def __init__(self, registry: CollectorRegistry, prefix: str):
        self._name = f"{prefix}_checks"
        self._counts: dict[Key, list[float]] = {}  # key -> [count, created (epoch seconds)]
        registry.register(self)

    def add(self, key: Key, n: float = 1.0) -> None:
        entry = self._counts.get(key)
        if entry is None:
            self._counts[key] = [float(n), time.time()]
        else:
            entry[0] += n

    def remove(self, component: str) -> None:
        for key in [k for k in self._counts if k[0] == component]:
            del self._counts[key]

    def describe(self) -> list[Metric]:
        return [self._family()]

    def collect(self) -> list[Metric]:
        family = self._family()
        total, created = f"{self._name}_total", f"{self._name}_created"
        # prometheus_client's switch for `_created` samples (PROMETHEUS_DISABLE_CREATED_SERIES).
        with_created = prometheus_metrics._use_created
        for (component, outcome), (count, since) in list(self._counts.items()):
            labels = {"component": component, "outcome": outcome}
            family.add_sample(total, labels, count)
            if with_created:
                family.add_sample(created, labels, since)
        return [family]

    def _family(self) -> Metric:
        return Metric(self._name, "Checks run.", "counter")
