"""Rules that heal (``heal: true``): a firing rule is an incident of its component, through the same
lifecycle as a failed check, so its recovery policy acts on it (queue depth high -> the Kubernetes
strategy's ``scale_up`` within its min/max). When the rule resolves, the incident closes, which is
what verifies the action.

One incident per rule at a time, however many of its series fire: the first firing series opens it,
the last one to clear closes it. It opens ``critical`` whatever the rule's alert severity (that
drives notifications only): the rule's author asked for an action, and the default ``heal_on`` acts
on critical incidents. Runs inside the evaluator's transaction (only flushes), like every subscriber.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Component, Incident
from app.db.models.metrics import DetectionRule, MetricAnomaly
from app.monitoring.external import close_external_incident, open_external_incident
from app.platform.events import AnomalyCleared, AnomalyDetected

if TYPE_CHECKING:
    from app.platform.events import EventBus

STATUS = "critical"


async def _healing_rule(session: AsyncSession, rule_id: int | None) -> DetectionRule | None:
    if rule_id is None:
        return None
    rule = await session.get(DetectionRule, rule_id)
    return rule if rule is not None and rule.heal else None


async def on_detected(events: EventBus, event: AnomalyDetected, session: AsyncSession) -> None:
    rule = await _healing_rule(session, event.rule_id)
    if rule is None:
        return
    component = (
        (await session.execute(select(Component).where(Component.name == rule.component)))
        .unique()
        .scalar_one_or_none()
    )
    if component is None:
        return  # a rule on a name that is not a registered component: nothing to heal
    firing = (
        (
            await session.execute(
                select(MetricAnomaly)
                .where(MetricAnomaly.rule_id == rule.id, MetricAnomaly.cleared_at.is_(None))
                .order_by(MetricAnomaly.id.desc())
            )
        )
        .scalars()
        .all()
    )
    if not firing:
        return
    newest = firing[0]
    open_ids = [a.incident_id for a in firing[1:] if a.incident_id is not None]
    if open_ids:
        still_open = (
            (
                await session.execute(
                    select(Incident.id).where(Incident.id.in_(open_ids), Incident.closed_at.is_(None))
                )
            )
            .scalars()
            .first()
        )
        if still_open is not None:
            newest.incident_id = still_open  # another series of the same rule already opened it
            await session.flush()
            return
    incident = await open_external_incident(
        session,
        events,
        component,
        status=STATUS,
        at=event.at,
        reason=f"rule {rule.name} fired: {event.message}",
    )
    newest.incident_id = incident.id
    await session.flush()


async def on_cleared(events: EventBus, event: AnomalyCleared, session: AsyncSession) -> None:
    rule = await _healing_rule(session, event.rule_id)
    if rule is None:
        return
    await session.flush()  # the evaluator stamped cleared_at on this series' anomaly
    rows = (
        await session.execute(
            select(MetricAnomaly.incident_id, MetricAnomaly.cleared_at)
            .join(Incident, Incident.id == MetricAnomaly.incident_id)
            .where(MetricAnomaly.rule_id == rule.id, Incident.closed_at.is_(None))
        )
    ).all()
    if any(cleared is None for _, cleared in rows):
        return  # another series of the rule still fires: the incident stays open
    for incident_id in sorted({i for i, _ in rows if i is not None}):
        await close_external_incident(
            session, events, incident_id, at=event.at, reason=f"rule {rule.name} resolved"
        )


class RuleHealing:
    """The two handlers, bound to the bus the incidents they open or close are published on."""

    def __init__(self, events: EventBus) -> None:
        self.events = events

    async def on_detected(self, event: AnomalyDetected, session: AsyncSession) -> None:
        await on_detected(self.events, event, session)

    async def on_cleared(self, event: AnomalyCleared, session: AsyncSession) -> None:
        await on_cleared(self.events, event, session)
