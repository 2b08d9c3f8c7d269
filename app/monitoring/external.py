"""Incidents raised from outside the guard's own checks (Alertmanager), so healing can act on them.

An external incident is an ordinary ``incidents`` row plus the same ``IncidentOpened`` /
``IncidentClosed`` events monitoring publishes, which is all the healing engine listens to. It is
never attached to the component's state machine: if the guard's own checks also fail, monitoring
opens its own incident as usual. When the external condition resolves (Alertmanager's "resolved"),
the incident closes, which is what verifies a healing attempt made for it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Component, Incident
from app.db.types import utcnow
from app.platform.events import EventBus, IncidentClosed, IncidentOpened


def has_recovery_policy(component: Component) -> bool:
    return bool(component.recovery and component.recovery.get("strategies"))


async def open_external_incident(
    session: AsyncSession,
    events: EventBus,
    component: Component,
    *,
    status: str,
    reason: str,
    at: datetime | None = None,
) -> Incident:
    at = at or utcnow()
    incident = Incident(
        component_id=component.id,
        opened_at=at,
        opening_status=status,
        worst_status=status,
        reason=reason[:2000],
    )
    session.add(incident)
    await session.flush()
    await events.publish(
        IncidentOpened(
            component=component.name,
            component_id=component.id,
            incident_id=incident.id,
            status=status,
            reason=incident.reason,
            at=at,
            critical=component.critical,
            labels=dict(component.labels or {}),
        ),
        session,
    )
    return incident


async def close_external_incident(
    session: AsyncSession, events: EventBus, incident_id: int, *, reason: str, at: datetime | None = None
) -> bool:
    """Close the incident if it is still open; returns whether it did."""
    incident = (
        await session.execute(
            select(Incident).where(Incident.id == incident_id, Incident.closed_at.is_(None))
        )
    ).scalar_one_or_none()
    if incident is None:
        return False
    component = await session.get(Component, incident.component_id)
    if component is None:
        return False
    at = at or utcnow()
    incident.closed_at, incident.close_reason = at, reason[:2000]
    await session.flush()
    await events.publish(
        IncidentClosed(
            component=component.name,
            component_id=component.id,
            incident_id=incident.id,
            reason=incident.close_reason,
            at=at,
            labels=dict(component.labels or {}),
        ),
        session,
    )
    return True
