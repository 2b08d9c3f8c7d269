"""`pipeline_guard_component_health` and `pipeline_guard_component_status`: one status per component,
turned into samples when the registry is collected (a /metrics scrape).

prometheus_client's Gauge keeps an object per label set (its value, a lock, a copy of the metric's
description): six per component, about 4.5 KB, 90 MB of a 20,000-component guard's memory for
what is one status string per component. The exposition is the one the two Gauges gave: the same
families, samples in the order the components were first published, a component's five status
samples in `STATUSES` order.

Statuses are published and scrapes collected on the event loop's thread; a collection copies the map
first, so one on another thread sees each component once, never a half-updated map.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from app.db.models.components import HealthStatus

HEALTH_VALUE = {"healthy": 1.0, "degraded": 0.5}  # any other status: 0
STATUSES = tuple(status.value for status in HealthStatus)


class ComponentGauges:
    def __init__(self, registry: CollectorRegistry, prefix: str):
        self._prefix = prefix
        self._status: dict[str, str] = {}  # component name -> status exported
        registry.register(self)

    def set(self, component: str, status: str) -> None:
        self._status[component] = status

    def remove(self, component: str) -> None:
        self._status.pop(component, None)

    def describe(self) -> list[Metric]:
        return self._families()

    def collect(self) -> list[Metric]:
        health, status = self._families()
        health_name, status_name = health.name, status.name
        for component, current in list(self._status.items()):
            health.add_sample(health_name, {"component": component}, HEALTH_VALUE.get(current, 0.0))
            for s in STATUSES:
                status.add_sample(
                    status_name, {"component": component, "status": s}, 1.0 if s == current else 0.0
                )
        return [health, status]

    def _families(self) -> list[Metric]:
        return [
            Metric(f"{self._prefix}_component_health", "1 healthy, 0.5 degraded, 0 otherwise.", "gauge"),
            Metric(f"{self._prefix}_component_status", "1 for the component's current status.", "gauge"),
        ]
