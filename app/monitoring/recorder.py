"""Writes a batch of observations in ONE transaction: raw results, component state, transitions,
incidents, and the events published inside that transaction.

The in-memory state is only advanced after the caller's commit: `write()` works on copies and
returns them (`Applied`), so a failed flush leaves memory and database agreeing.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.checks.base import CheckResult
from app.db.models import CheckResultRecord, Component, ComponentState, HealthTransitionRecord, Incident
from app.db.types import utcnow
from app.events import HealthTransition, IncidentClosed, IncidentOpened
from app.monitoring import state_machine as sm

if TYPE_CHECKING:
    from app.events import EventBus

log = logging.getLogger("pipeline_guard.monitoring")
RESULT_IDS_KEPT = 16


@dataclass
class Observation:
    component_id: int
    kind: str
    result: CheckResult


@dataclass
class RecoveryMark:
    component_id: int
    action: str
    at: datetime


@dataclass
class Tracked:
    """What the scheduler remembers about one component between flushes."""

    component_id: int
    name: str
    critical: bool
    labels: dict[str, str]
    thresholds: sm.Thresholds
    machine: sm.MachineState
    incident_id: int | None = None
    incident_worst: str | None = None
    last_check_at: datetime | None = None
    last_outcome: str | None = None
    last_detail: str | None = None
    last_latency_ms: float | None = None
    recent_result_ids: deque[int] = field(default_factory=lambda: deque(maxlen=RESULT_IDS_KEPT))

    def copy(self) -> Tracked:
        return replace(self, recent_result_ids=deque(self.recent_result_ids, maxlen=RESULT_IDS_KEPT))


@dataclass
class Applied:
    tracked: dict[int, Tracked]
    transitions: list[HealthTransition]
    results_written: int


async def write_batch(session: AsyncSession, items: list[Observation | RecoveryMark],
                      tracked: dict[int, Tracked], events: EventBus) -> Applied:
    touched_ids = {item.component_id for item in items if item.component_id in tracked}
    if touched_ids:
        # Components deleted since their probe started are dropped (their rows would violate the FK).
        alive = set((await session.execute(select(Component.id).where(Component.id.in_(touched_ids)))).scalars())
    else:
        alive = set()
    items = [item for item in items if item.component_id in alive]
    observations = [item for item in items if isinstance(item, Observation)]
    result_ids: list[int] = []
    if observations:
        rows = [
            {
                "component_id": o.component_id,
                "observed_at": o.result.observed_at,
                "outcome": o.result.outcome.value,
                "latency_ms": None if o.result.latency_s is None else round(o.result.latency_s * 1000, 3),
                "detail": o.result.detail[:1000],
            }
            for o in observations
        ]
        stmt = insert(CheckResultRecord).returning(CheckResultRecord.id, sort_by_parameter_order=True)
        result_ids = list((await session.execute(stmt, rows)).scalars())

    work: dict[int, Tracked] = {}
    transitions: list[HealthTransition] = []
    ids = iter(result_ids)
    for item in items:
        t = work.get(item.component_id) or tracked[item.component_id].copy()
        work[item.component_id] = t
        if isinstance(item, Observation):
            result = item.result
            t.recent_result_ids.append(next(ids))
            t.last_check_at, t.last_outcome, t.last_detail = result.observed_at, result.outcome.value, result.detail
            t.last_latency_ms = None if result.latency_s is None else result.latency_s * 1000
            t.machine, decision = sm.observe(t.machine, result.outcome, result.observed_at, t.thresholds, result.detail)
            at = result.observed_at
        else:
            t.machine, decision = sm.begin_recovery(t.machine, item.at, t.thresholds, item.action)
            at = item.at
        if decision is not None:
            transitions.append(await _record_transition(session, t, decision, at, events))

    if work:
        now = utcnow()
        await session.execute(update(ComponentState), [_state_row(t, now) for t in work.values()])
    return Applied(tracked=work, transitions=transitions, results_written=len(result_ids))


def _state_row(t: Tracked, now: datetime) -> dict[str, Any]:
    m = t.machine
    return {
        "component_id": t.component_id,
        "status": m.status,
        "status_since": m.status_since or now,
        "consecutive_failures": m.consecutive_failures,
        "consecutive_successes": m.consecutive_successes,
        "recent_outcomes": m.recent,
        "grace_until": m.grace_until,
        "current_incident_id": t.incident_id,
        "last_check_at": t.last_check_at,
        "last_outcome": t.last_outcome,
        "last_detail": t.last_detail,
        "last_latency_ms": t.last_latency_ms,
        "updated_at": now,
    }


async def _record_transition(session: AsyncSession, t: Tracked, decision: sm.Decision, at: datetime,
                             events: EventBus) -> HealthTransition:
    opened: IncidentOpened | None = None
    closed: IncidentClosed | None = None
    if decision.current in sm.UNHEALTHY:
        if t.incident_id is None:
            incident = Incident(component_id=t.component_id, opened_at=at, opening_status=decision.current,
                                worst_status=decision.current, reason=decision.reason)
            session.add(incident)
            await session.flush()
            t.incident_id, t.incident_worst = incident.id, decision.current
            opened = IncidentOpened(component=t.name, component_id=t.component_id, incident_id=incident.id,
                                    status=decision.current, reason=decision.reason, at=at, critical=t.critical,
                                    labels=dict(t.labels))
        elif sm.SEVERITY[decision.current] > sm.SEVERITY.get(t.incident_worst or "", 0):
            t.incident_worst = decision.current
            await session.execute(update(Incident).where(Incident.id == t.incident_id)
                                  .values(worst_status=decision.current))
    incident_id = t.incident_id
    if decision.current == sm.HEALTHY and t.incident_id is not None:
        await session.execute(update(Incident).where(Incident.id == t.incident_id)
                              .values(closed_at=at, close_reason=decision.reason))
        closed = IncidentClosed(component=t.name, component_id=t.component_id, incident_id=t.incident_id,
                                reason=decision.reason, at=at, labels=dict(t.labels))
        t.incident_id, t.incident_worst = None, None

    record = HealthTransitionRecord(
        component_id=t.component_id, at=at, previous=decision.previous, current=decision.current,
        reason=decision.reason, result_ids=list(t.recent_result_ids)[-max(t.thresholds.failure_threshold,
                                                                          t.thresholds.success_threshold):],
        summary={"recent_outcomes": t.machine.recent[-t.thresholds.window:], "last_detail": t.last_detail,
                 "last_latency_ms": t.last_latency_ms},
        incident_id=incident_id,
    )
    session.add(record)
    await session.flush()
    event = HealthTransition(component=t.name, component_id=t.component_id, previous=decision.previous,
                             current=decision.current, reason=decision.reason, at=at, critical=t.critical,
                             labels=dict(t.labels), incident_id=incident_id, transition_id=record.id)
    log.info("component %s: %s -> %s (%s)", t.name, decision.previous, decision.current, decision.reason)
    if opened is not None:
        await events.publish(opened, session)
    await events.publish(event, session)
    if closed is not None:
        await events.publish(closed, session)
    return event
