"""Domain events -> alerts, inside the publisher's transaction (handlers only flush).

- HealthTransition / IncidentOpened / IncidentClosed share the fingerprint ``health:<component>``, so a
  transition and the incident it opens are one alert: critical/failed (or degraded -> warning) raise
  or refresh it, healthy resolves it, an incident close resolves it with the incident's reason.
- AnomalyDetected / AnomalyCleared: ``anomaly:<component>:<metric>:<rule>:<labels>``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts.fingerprints import anomaly_fingerprint, health_fingerprint
from app.alerts.service import AlertService
from app.db.models.metrics import DetectionRule
from app.platform.events import (
    AnomalyCleared,
    AnomalyDetected,
    HealthTransition,
    IncidentClosed,
    IncidentOpened,
)

if TYPE_CHECKING:
    from app.config.settings import Settings

UNHEALTHY_SEVERITY = {"failed": "critical", "critical": "critical", "degraded": "warning"}


async def root_cause_context(
    session: AsyncSession, component: str, incident_id: int | None
) -> tuple[bool, dict, str]:
    """(quiet, metadata, message suffix): a child attributed to (or held for) an upstream root is
    recorded with ``caused_by`` and not notified; a root lists the components it affects."""
    from app.healing import rootcause

    quiet, root = False, None
    if await rootcause.has_upstream(session, component):  # only a child can be attributed or held
        quiet, root = await rootcause.is_suppressed(session, incident_id)
    if root:
        return quiet, {"caused_by": root}, f" (caused by {root})"
    if quiet:
        return True, {}, ""
    affected = await rootcause.affected(session, component)
    if affected:
        return False, {"affected": affected}, f" (affects: {', '.join(affected)})"
    return False, {}, ""


class AlertSubscribers:
    """The alert handlers; ``app/platform/compose.py`` subscribes them, in its one ordered list."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def service(self, session: AsyncSession) -> AlertService:
        return AlertService(session, self.settings)

    async def on_transition(self, event: HealthTransition, session: AsyncSession) -> None:
        if event.current in UNHEALTHY_SEVERITY:
            severity = UNHEALTHY_SEVERITY[event.current]
            quiet, extra, suffix = await root_cause_context(session, event.component, event.incident_id)
            await self.service(session).raise_alert(
                component=event.component,
                component_id=event.component_id,
                severity=severity,
                message=f"{event.component} is {event.current}: {event.reason}{suffix}",
                fingerprint=health_fingerprint(event.component),
                labels=event.labels,
                metadata={
                    "previous": event.previous,
                    "current": event.current,
                    "transition_id": event.transition_id,
                    "critical": event.critical,
                    **extra,
                },
                incident_id=event.incident_id,
                source="monitoring",
                at=event.at,
                quiet=quiet,
            )
        elif event.current == "healthy":
            await self.service(session).resolve_fingerprint(
                health_fingerprint(event.component),
                resolution_action=f"recovered: {event.reason}",
                actor="monitoring",
            )

    async def on_incident_opened(self, event: IncidentOpened, session: AsyncSession) -> None:
        quiet, extra, suffix = await root_cause_context(session, event.component, event.incident_id)
        await self.service(session).raise_alert(
            component=event.component,
            component_id=event.component_id,
            severity=UNHEALTHY_SEVERITY.get(event.status, "critical"),
            message=f"{event.component} is {event.status}: {event.reason}{suffix}",
            fingerprint=health_fingerprint(event.component),
            labels=event.labels,
            metadata={"critical": event.critical, **extra},
            incident_id=event.incident_id,
            source="monitoring",
            at=event.at,
            quiet=quiet,
        )

    async def on_incident_closed(self, event: IncidentClosed, session: AsyncSession) -> None:
        await self.service(session).resolve_fingerprint(
            health_fingerprint(event.component),
            resolution_action=f"incident {event.incident_id} closed: {event.reason}",
            actor="monitoring",
        )

    async def on_anomaly(self, event: AnomalyDetected, session: AsyncSession) -> None:
        # A rule that heals opens an incident whose health alert notifies (and follows root-cause
        # attribution): its own alert is recorded without a second notification.
        quiet = event.rule_id is not None and bool(
            (
                await session.execute(select(DetectionRule.heal).where(DetectionRule.id == event.rule_id))
            ).scalar()
        )
        await self.service(session).raise_alert(
            quiet=quiet,
            quiet_reason="the rule heals: its incident's alert notifies",
            component=event.component,
            severity=event.severity if event.severity in ("info", "warning", "critical") else "warning",
            message=event.message,
            fingerprint=anomaly_fingerprint(
                event.component, event.metric_name, event.rule_id, event.rule_kind, event.labels
            ),
            labels=event.labels,
            metadata={
                "metric": event.metric_name,
                "rule_id": event.rule_id,
                "rule_kind": event.rule_kind,
                "evidence": event.evidence,
            },
            source="detection",
            at=event.at,
        )

    async def on_anomaly_cleared(self, event: AnomalyCleared, session: AsyncSession) -> None:
        await self.service(session).resolve_fingerprint(
            anomaly_fingerprint(
                event.component, event.metric_name, event.rule_id, event.rule_kind, event.labels
            ),
            resolution_action=f"{event.metric_name} back to normal",
            actor="detection",
        )
