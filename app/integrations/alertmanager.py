"""Alertmanager webhook receiver (payload version 4): each Alertmanager alert becomes a guard alert.

Component mapping: the first of ``alerting.alertmanager_component_labels`` (default ``component``,
``job``, ``instance``) whose value names a registered component; when none does, the first label
present names an unknown component (the alert is still kept, with ``component_id`` empty, and the
name is reported back), and with none of the labels the component is ``unknown``.
``firing`` opens or refreshes the alert (fingerprint ``am:<Alertmanager fingerprint>``, so repeats
deduplicate), ``resolved`` resolves it.

Healing: when a firing alert names a registered component that has a recovery policy, the receiver
also opens an external incident for it (app/monitoring/external.py), so the healing engine acts per
the component's policy exactly as for a failed check (a critical alert opens a critical incident, any
other a degraded one, healed only when the policy's ``heal_on`` has ``degraded``); Alertmanager's
``resolved`` closes the incident, which verifies the heal. The restart itself never opens a second
incident (``app/healing/lifecycle.py``): the component's checks get the policy's grace for its start-up.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts.service import AlertService
from app.config.settings import Settings
from app.db.models import Component
from app.healing import lifecycle
from app.monitoring.external import close_external_incident, has_recovery_policy, open_external_incident
from app.platform.events import EventBus

SEVERITIES = {
    "critical": "critical",
    "error": "critical",
    "page": "critical",
    "high": "critical",
    "fatal": "critical",
    "warning": "warning",
    "warn": "warning",
    "medium": "warning",
    "info": "info",
    "low": "info",
    "none": "info",
}
MAX_LABELS = 32


class AlertmanagerAlert(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime | None = None
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: str = ""


class AlertmanagerPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: str = "4"
    status: Literal["firing", "resolved"] = "firing"
    receiver: str = ""
    alerts: list[AlertmanagerAlert] = Field(default_factory=list, max_length=10_000)
    groupKey: str = ""
    externalURL: str = ""
    truncatedAlerts: int = 0


AlertAction = Literal["opened", "refreshed", "resolved", "not_active"]


class ReceivedAlert(BaseModel):
    fingerprint: str
    component: str
    known_component: bool
    action: AlertAction
    alert_id: int | None


class ReceiverResult(BaseModel):
    received: int
    results: list[ReceivedAlert]
    unknown_components: list[str]


def _fingerprint(alert: AlertmanagerAlert) -> str:
    if alert.fingerprint:
        return f"am:{alert.fingerprint}"
    digest = hashlib.sha256(json.dumps(alert.labels, sort_keys=True).encode()).hexdigest()[:16]
    return f"am:{digest}"


class AlertmanagerReceiver:
    def __init__(self, session: AsyncSession, settings: Settings, events: EventBus | None = None):
        self.session = session
        self.settings = settings
        self.events = events
        self.alerts = AlertService(session, settings)
        self._components: dict[str, int | None] = {}

    async def _component_id(self, name: str) -> int | None:
        if name not in self._components:
            self._components[name] = await self.session.scalar(
                select(Component.id).where(Component.name == name)
            )
        return self._components[name]

    async def map_component(self, labels: dict[str, str]) -> tuple[str, int | None]:
        present = [labels[k] for k in self.settings.alerting.alertmanager_component_labels if labels.get(k)]
        for name in present:
            component_id = await self._component_id(name)
            if component_id is not None:
                return name, component_id
        return (present[0][:128] if present else "unknown"), None

    async def receive(self, payload: AlertmanagerPayload) -> ReceiverResult:
        results: list[ReceivedAlert] = []
        unknown: list[str] = []
        for am in payload.alerts:
            component, component_id = await self.map_component(am.labels)
            if component_id is None and component not in unknown:
                unknown.append(component)
            fingerprint = _fingerprint(am)
            action: AlertAction
            if am.status == "resolved":
                ended = am.endsAt.isoformat() if am.endsAt else "now"
                alert = await self.alerts.resolve_fingerprint(
                    fingerprint,
                    resolution_action=f"resolved by Alertmanager (ended {ended})",
                    actor="alertmanager",
                )
                action = "resolved" if alert else "not_active"
                if alert is not None and alert.incident_id is not None and self.events is not None:
                    await close_external_incident(
                        self.session,
                        self.events,
                        alert.incident_id,
                        reason=f"resolved by Alertmanager (ended {ended})",
                    )
            else:
                labels = dict(list(am.labels.items())[:MAX_LABELS])
                metadata: dict[str, Any] = {
                    "alertname": am.labels.get("alertname"),
                    "annotations": am.annotations,
                    "generator_url": am.generatorURL,
                    "starts_at": am.startsAt.isoformat() if am.startsAt else None,
                    "receiver": payload.receiver,
                    "external_url": payload.externalURL,
                }
                message = (
                    am.annotations.get("summary")
                    or am.annotations.get("description")
                    or am.labels.get("alertname")
                    or "Alertmanager alert"
                )
                severity = SEVERITIES.get(am.labels.get("severity", "").lower(), "warning")
                raised = await self.alerts.raise_alert(
                    component=component,
                    component_id=component_id,
                    severity=severity,
                    message=message,
                    fingerprint=fingerprint,
                    labels=labels,
                    metadata=metadata,
                    source="alertmanager",
                )
                alert = raised.alert
                action = "opened" if raised.created else "refreshed"
                await self._open_incident_for_healing(alert, component_id, severity, message)
            results.append(
                ReceivedAlert(
                    fingerprint=fingerprint,
                    component=component,
                    known_component=component_id is not None,
                    action=action,
                    alert_id=alert.id if alert else None,
                )
            )
        return ReceiverResult(received=len(payload.alerts), results=results, unknown_components=unknown)

    async def _open_incident_for_healing(
        self, alert, component_id: int | None, severity: str, message: str
    ) -> None:
        if self.events is None or component_id is None or alert.incident_id is not None:
            return
        component = await self.session.get(Component, component_id)
        if component is None or not component.enabled or not has_recovery_policy(component):
            return
        status = lifecycle.external_status(severity)
        incident = await open_external_incident(
            self.session, self.events, component, status=status, reason=f"Alertmanager: {message}"
        )
        alert.incident_id = incident.id
        await self.session.flush()
