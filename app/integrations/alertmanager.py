"""Alertmanager webhook receiver (payload version 4): each Alertmanager alert becomes a guard alert.

Component mapping: the first of ``alerting.alertmanager_component_labels`` (default ``component``,
``job``, ``instance``) whose value names a registered component; when none does, the first label
present names an unknown component (the alert is still kept, with ``component_id`` empty, and the
name is reported back), and with none of the labels the component is ``unknown``.
``firing`` opens or refreshes the alert (fingerprint ``am:<Alertmanager fingerprint>``, so repeats
deduplicate), ``resolved`` resolves it.
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
from app.config import Settings
from app.db.models import Component

SEVERITIES = {
    "critical": "critical", "error": "critical", "page": "critical", "high": "critical", "fatal": "critical",
    "warning": "warning", "warn": "warning", "medium": "warning",
    "info": "info", "low": "info", "none": "info",
}
MAX_LABELS = 32


class AlertmanagerAlert(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime | None = None  # noqa: N815 - Alertmanager's names
    endsAt: datetime | None = None  # noqa: N815
    generatorURL: str = ""  # noqa: N815
    fingerprint: str = ""


class AlertmanagerPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: str = "4"
    status: Literal["firing", "resolved"] = "firing"
    receiver: str = ""
    alerts: list[AlertmanagerAlert] = Field(default_factory=list, max_length=10_000)
    groupKey: str = ""  # noqa: N815
    externalURL: str = ""  # noqa: N815
    truncatedAlerts: int = 0  # noqa: N815


class ReceivedAlert(BaseModel):
    fingerprint: str
    component: str
    known_component: bool
    action: Literal["opened", "refreshed", "resolved", "not_active"]
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
    def __init__(self, session: AsyncSession, settings: Settings):
        self.session = session
        self.settings = settings
        self.alerts = AlertService(session, settings)
        self._components: dict[str, int | None] = {}

    async def _component_id(self, name: str) -> int | None:
        if name not in self._components:
            self._components[name] = await self.session.scalar(select(Component.id).where(Component.name == name))
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
            if am.status == "resolved":
                ended = am.endsAt.isoformat() if am.endsAt else "now"
                alert = await self.alerts.resolve_fingerprint(
                    fingerprint, resolution_action=f"resolved by Alertmanager (ended {ended})", actor="alertmanager"
                )
                action = "resolved" if alert else "not_active"
            else:
                labels = dict(list(am.labels.items())[:MAX_LABELS])
                metadata: dict[str, Any] = {
                    "alertname": am.labels.get("alertname"), "annotations": am.annotations,
                    "generator_url": am.generatorURL, "starts_at": am.startsAt.isoformat() if am.startsAt else None,
                    "receiver": payload.receiver, "external_url": payload.externalURL,
                }
                message = (am.annotations.get("summary") or am.annotations.get("description")
                           or am.labels.get("alertname") or "Alertmanager alert")
                severity = SEVERITIES.get(am.labels.get("severity", "").lower(), "warning")
                raised = await self.alerts.raise_alert(
                    component=component, component_id=component_id, severity=severity, message=message,
                    fingerprint=fingerprint, labels=labels, metadata=metadata, source="alertmanager",
                )
                alert = raised.alert
                action = "opened" if raised.created else "refreshed"
            results.append(ReceivedAlert(fingerprint=fingerprint, component=component,
                                         known_component=component_id is not None, action=action,
                                         alert_id=alert.id if alert else None))
        return ReceiverResult(received=len(payload.alerts), results=results, unknown_components=unknown)
