"""`pipeline_guard_component_health` / `_status` keep one status per component, not six Gauge children,
and a scrape shows exactly what the two prometheus_client Gauges showed."""

from __future__ import annotations

import tracemalloc

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from app.monitoring.probe_metrics import ProbeMetrics
from app.observability.metrics import GuardMetrics

HEALTH_VALUE = {"healthy": 1.0, "degraded": 0.5}
STATUSES = ("unknown", "healthy", "degraded", "critical", "recovering", "failed")


class GaugesAsBefore:
    """The two Gauges as the guard declared them, driven as the scheduler drove them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.health = Gauge(
            "pipeline_guard_component_health",
            "1 healthy, 0.5 degraded, 0 otherwise.",
            ["component"],
            registry=self.registry,
        )
        self.status = Gauge(
            "pipeline_guard_component_status",
            "1 for the component's current status.",
            ["component", "status"],
            registry=self.registry,
        )

    def set(self, name: str, status: str) -> None:
        self.health.labels(name).set(HEALTH_VALUE.get(status, 0.0))
        for s in STATUSES:
            self.status.labels(name, s).set(1.0 if s == status else 0.0)

    def remove(self, name: str) -> None:
        self.health.remove(name)
        for s in STATUSES:
            self.status.remove(name, s)


def component_families(text: bytes) -> list[str]:
    return [
        line
        for line in text.decode().splitlines()
        if "_component_health" in line or "_component_status" in line
    ]


def test_a_scrape_shows_what_the_gauges_showed():
    before, metrics = GaugesAsBefore(), GuardMetrics()
    probe_metrics = ProbeMetrics(metrics)
    health: dict[str, str] = {}
    steps = [
        ("a", "healthy"),
        ("b", "degraded"),
        ('c"quoted\\name', "critical"),
        ("a", "recovering"),
        ("b", None),  # deleted
        ("b", "unknown"),  # re-created: listed last
        ("d", "failed"),
        ("a", "healthy"),
    ]
    for name, status in steps:
        if status is None:
            before.remove(name)
            probe_metrics.forget(name)
            health.pop(name)
            continue
        before.set(name, status)
        probe_metrics.publish_health(health, [(name, status)], full=False, last_lag=None)
    for generate in (generate_latest, generate_openmetrics):
        assert component_families(generate(metrics.registry)) == component_families(generate(before.registry))
    assert (
        'pipeline_guard_component_status{component="b",status="unknown"} 1.0'
        in generate_latest(metrics.registry).decode()
    )


def test_a_components_status_costs_a_map_entry_not_gauge_children():
    metrics = GuardMetrics()
    probe_metrics = ProbeMetrics(metrics)
    names = [f"svc-{i:05d}" for i in range(2000)]
    health: dict[str, str] = {}
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        probe_metrics.publish_health(health, [(n, "healthy") for n in names], full=True, last_lag=None)
        per_component = (tracemalloc.get_traced_memory()[0] - start) / len(names)
    finally:
        tracemalloc.stop()
    # Six Gauge children took about 4,500 bytes a component; the health map and two status maps
    # (the exported one and the scheduler's) are well under 1,000.
    assert per_component < 1000, per_component
