"""In-process domain events: one module publishes, others subscribe.

Handlers run inside the publisher's transaction (they receive its session and only flush), so an
alert or outbox row caused by a transition commits atomically with the transition itself. A handler
that raises rolls the whole change back; the publisher's loop retries on its next iteration.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

log = logging.getLogger("pipeline_guard.events")


@dataclass(frozen=True)
class HealthTransition:
    """``component`` went from ``previous`` to ``current`` because ``reason``."""

    component: str
    component_id: int
    previous: str
    current: str
    reason: str
    at: datetime
    critical: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    incident_id: int | None = None
    transition_id: int | None = None


@dataclass(frozen=True)
class IncidentOpened:
    component: str
    component_id: int
    incident_id: int
    status: str
    reason: str
    at: datetime
    critical: bool = False
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class IncidentReleased:
    """A held or attributed incident (root cause) became the component's own: notified, healed."""

    component: str
    component_id: int
    incident_id: int
    opened_at: datetime
    at: datetime


@dataclass(frozen=True)
class IncidentClosed:
    component: str
    component_id: int
    incident_id: int
    reason: str
    at: datetime
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ComponentDeleted:
    """A component left the registry (published inside the deleting transaction)."""

    component: str
    component_id: int
    at: datetime


@dataclass(frozen=True)
class AnomalyDetected:
    """A detection rule fired on a metric series (threshold, anomaly score or trend)."""

    component: str
    metric_name: str
    labels: dict[str, str]
    rule_id: int | None
    rule_kind: str
    severity: str
    message: str
    evidence: dict[str, Any]
    at: datetime


@dataclass(frozen=True)
class AnomalyCleared:
    component: str
    metric_name: str
    labels: dict[str, str]
    rule_id: int | None
    rule_kind: str
    at: datetime


Handler = Callable[[Any, AsyncSession], Awaitable[None]]


class EventBus:
    def __init__(self) -> None:
        self._handlers: dict[type, list[Handler]] = defaultdict(list)

    def subscribe(self, event_type: type, handler: Handler) -> None:
        """Handlers run in subscription order: ``app/platform/compose.py`` subscribes them all, from
        one ordered list."""
        self._handlers[event_type].append(handler)

    async def publish(self, event: Any, session: AsyncSession) -> None:
        for handler in self._handlers.get(type(event), []):
            await handler(event, session)

    def handlers(self, event_type: type) -> list[Handler]:
        return list(self._handlers.get(event_type, []))
