"""The transition bookkeeping of a batch write (`recorder.write_batch`): each state-machine decision
opens, worsens or closes the component's incident in memory (`fold_transition`, rows written in bulk
by the recorder afterwards), then its events are published in order (`publish_transition`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.healing import lifecycle
from app.monitoring import state_machine as sm
from app.platform.events import HealthTransition, IncidentClosed, IncidentOpened

if TYPE_CHECKING:
    from app.monitoring.tracked import Tracked
    from app.platform.events import EventBus

log = logging.getLogger("pipeline_guard.monitoring")


@dataclass
class NewIncident:
    row: dict[str, Any]
    id: int | None = None  # set once the recorder's INSERT ... RETURNING ran

    @property
    def inserted_id(self) -> int:
        if self.id is None:
            raise RuntimeError("incident not inserted yet")
        return self.id


@dataclass
class PendingTransition:
    t: Tracked
    decision: sm.Decision
    at: datetime
    row: dict[str, Any]
    incident_ref: NewIncident | int | None
    opened: NewIncident | None
    closed_ref: NewIncident | int | None
    results_seen: int


def fold_transition(
    t: Tracked,
    decision: sm.Decision,
    at: datetime,
    new_incidents: dict[int, NewIncident],
    opened_here: list[NewIncident],
    incident_updates: dict[int, dict[str, Any]],
    results_seen: int,
) -> PendingTransition:
    """Open/worsen/close the incident in memory; the rows are written in bulk afterwards (the
    `result_ids` once the results have ids: `results_seen` of this batch's results lead up to it)."""
    cid = t.component_id
    opened: NewIncident | None = None
    closed_ref: NewIncident | int | None = None
    current: NewIncident | int | None = new_incidents.get(cid) or t.incident_id
    if decision.current in sm.UNHEALTHY:
        if current is None and not lifecycle.opens_incident(decision.previous, decision.current):
            pass  # an action's own effect (recovering) never opens an incident
        elif current is None:
            opened = NewIncident(
                {
                    "component_id": cid,
                    "opened_at": at,
                    "opening_status": decision.current,
                    "worst_status": decision.current,
                    "reason": decision.reason,
                    "closed_at": None,
                    "close_reason": None,
                }
            )
            opened_here.append(opened)
            new_incidents[cid] = current = opened
            t.incident_worst = decision.current
        elif sm.SEVERITY[decision.current] > sm.SEVERITY.get(t.incident_worst or "", 0):
            t.incident_worst = decision.current
            if isinstance(current, NewIncident):
                current.row["worst_status"] = decision.current
            else:
                incident_updates.setdefault(current, {})["worst_status"] = decision.current
    incident_ref = current
    if decision.current == sm.HEALTHY and current is not None:
        if isinstance(current, NewIncident):
            current.row.update(closed_at=at, close_reason=decision.reason)
            del new_incidents[cid]
        else:
            incident_updates.setdefault(current, {}).update(closed_at=at, close_reason=decision.reason)
        closed_ref = current
        t.incident_id, t.incident_worst = None, None
    row = {
        "component_id": cid,
        "at": at,
        "previous": decision.previous,
        "current": decision.current,
        "reason": decision.reason,
        "result_ids": None,
        "summary": {
            "recent_outcomes": t.machine.recent[-t.thresholds.window :],
            "last_detail": t.last_detail,
            "last_latency_ms": t.last_latency_ms,
        },
    }
    return PendingTransition(t, decision, at, row, incident_ref, opened, closed_ref, results_seen)


async def publish_transition(
    p: PendingTransition,
    incident_id: int | None,
    transition_id: int,
    session: AsyncSession,
    events: EventBus,
) -> HealthTransition:
    t, decision, at = p.t, p.decision, p.at
    event = HealthTransition(
        component=t.name,
        component_id=t.component_id,
        previous=decision.previous,
        current=decision.current,
        reason=decision.reason,
        at=at,
        critical=t.critical,
        labels=dict(t.labels),
        incident_id=incident_id,
        transition_id=transition_id,
    )
    log.info("component %s: %s -> %s (%s)", t.name, decision.previous, decision.current, decision.reason)
    if p.opened is not None:
        await events.publish(
            IncidentOpened(
                component=t.name,
                component_id=t.component_id,
                incident_id=p.opened.inserted_id,
                status=decision.current,
                reason=decision.reason,
                at=at,
                critical=t.critical,
                labels=dict(t.labels),
            ),
            session,
        )
    await events.publish(event, session)
    if p.closed_ref is not None:
        closed_id = p.closed_ref.inserted_id if isinstance(p.closed_ref, NewIncident) else p.closed_ref
        await events.publish(
            IncidentClosed(
                component=t.name,
                component_id=t.component_id,
                incident_id=closed_id,
                reason=decision.reason,
                at=at,
                labels=dict(t.labels),
            ),
            session,
        )
    return event
