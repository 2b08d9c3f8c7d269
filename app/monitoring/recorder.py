"""Writes a batch of observations in ONE transaction: raw results, component state, transitions,
incidents, and the events published inside that transaction (the incident and transition
bookkeeping is in `transitions.py`).

The in-memory state is only advanced after the caller's commit: `write()` works on copies and
returns them (`Applied`), so a failed flush leaves memory and database agreeing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import Base
from app.db.models import Component, HealthTransitionRecord, Incident
from app.db.types import utcnow
from app.monitoring import state_machine as sm
from app.monitoring.result_rows import DETAIL_MAX, PostgresRows, SQLiteRows, rows_for
from app.monitoring.tracked import Observation, RecoveryMark, Tracked
from app.monitoring.transitions import NewIncident, PendingTransition, fold_transition, publish_transition
from app.platform.events import HealthTransition

if TYPE_CHECKING:
    from app.platform.events import EventBus

log = logging.getLogger("pipeline_guard.monitoring")


@dataclass
class Applied:
    tracked: dict[int, Tracked]
    transitions: list[HealthTransition]
    results_written: int


async def write_batch(
    session: AsyncSession,
    items: list[Observation | RecoveryMark],
    tracked: dict[int, Tracked],
    events: EventBus,
    acting: dict[int, datetime] | None = None,
    alive: set[int] | None = None,
) -> Applied:
    """Reads first, the state machine folded in memory, then the writes back to back (on SQLite the
    write lock is taken by the first INSERT and held until the caller commits): results (through the
    driver, `result_rows.py`), new incidents and transitions (one executemany each), the events in order
    (IncidentOpened -> HealthTransition -> IncidentClosed, subscribers write in this transaction),
    and the component states (through the driver).

    ``acting``: components a recovery action is running on (until when). Their failures are the
    action's own effect: they change nothing (app/healing/lifecycle.py); a pass counts as usual.
    A ``pending`` result (a batch job's rerun that has not said how it ended) changes nothing either.

    ``alive``: the components the caller knows exist until its commit (the lease fence's rows): no
    read of its own for them."""
    touched_ids = {item.component_id for item in items if item.component_id in tracked}
    if alive is not None:
        alive = alive & touched_ids
    elif touched_ids:
        # Components deleted since their probe started are dropped (their rows would violate the FK).
        alive = set(
            (await session.execute(select(Component.id).where(Component.id.in_(touched_ids)))).scalars()
        )
    else:
        alive = set()
    items = [item for item in items if item.component_id in alive]
    observations = [item for item in items if isinstance(item, Observation)]

    # The whole fold runs before the first write: on SQLite the write lock is then held only for the
    # statements themselves, not for this Python work (nor for the event loop rounds in between).
    work: dict[int, Tracked] = {}
    owners: list[Tracked] = []  # per observation, in order: the copy it is folded into
    seen: dict[int, int] = {}  # component -> observations folded so far in this batch
    pending: list[PendingTransition] = []
    new_incidents: dict[int, NewIncident] = {}  # component -> incident opened in this batch, still open
    opened_here: list[NewIncident] = []
    incident_updates: dict[int, dict[str, Any]] = {}  # existing incident id -> new column values
    for item in items:
        cid = item.component_id
        t = work.get(cid)
        if t is None:
            t = work[cid] = tracked[cid].copy()
        if isinstance(item, Observation):
            result = item.result
            at = result.observed_at
            owners.append(t)
            seen[cid] = seen.get(cid, 0) + 1
            t.last_check_at, t.last_outcome, t.last_detail = at, result.outcome.value, result.detail
            t.last_latency_ms = None if result.latency_s is None else result.latency_s * 1000
            if result.pending:
                continue  # no verdict yet (a rerun still running): stored, changes nothing
            until = acting.get(cid) if acting else None
            if until is not None and at < until and result.outcome.value != "up":
                continue
            t.machine, decision = sm.observe(
                t.machine,
                result.outcome,
                at,
                t.thresholds,
                result.detail,
                conclusive=result.conclusive,
            )
        else:
            if acting:
                acting.pop(cid, None)  # the action is over: its grace takes over
            t.machine, decision = sm.begin_recovery(
                t.machine, item.at, t.thresholds, item.action, item.grace_s
            )
            at = item.at
        if decision is not None:
            pending.append(
                fold_transition(
                    t, decision, at, new_incidents, opened_here, incident_updates, seen.get(cid, 0)
                )
            )

    store = _rows(session)
    now = utcnow()
    # Without a transition nothing written below changes a state row: they are made now, before the
    # first write (on SQLite the write lock is then held for the statements only).
    states = (
        store.prepare_states([_state_row(t, now) for t in work.values()]) if work and not pending else None
    )
    result_ids: list[int] = []
    if observations:
        result_ids = await store.insert_results(
            session,
            [
                (
                    cid,
                    r.observed_at,
                    r.outcome.value,
                    None if r.latency_s is None else round(r.latency_s * 1000, 3),
                    r.detail[:DETAIL_MAX],
                )
                for cid, _, r in observations
            ],
        )
    new_ids: dict[int, list[int]] = {}
    for t, result_id in zip(owners, result_ids, strict=True):
        new_ids.setdefault(t.component_id, []).append(result_id)
    for p in pending:  # the results that led to each transition, up to and including its own
        keep = max(p.t.thresholds.failure_threshold, p.t.thresholds.success_threshold)
        p.row["result_ids"] = (
            list(p.t.recent_result_ids) + new_ids.get(p.t.component_id, [])[: p.results_seen]
        )[-keep:]
    for cid, ids in new_ids.items():
        work[cid].recent_result_ids.extend(ids)

    if opened_here:
        stmt = insert(_table(Incident)).returning(_table(Incident).c.id, sort_by_parameter_order=True)
        for inc, incident_id in zip(
            opened_here, (await session.execute(stmt, [i.row for i in opened_here])).scalars(), strict=True
        ):
            inc.id = incident_id
        for cid, inc in new_incidents.items():
            work[cid].incident_id = inc.id
    for incident_id, values in incident_updates.items():
        await session.execute(update(Incident).where(Incident.id == incident_id).values(**values))
    transitions: list[HealthTransition] = []
    if pending:
        rows = [
            {
                **p.row,
                "incident_id": p.incident_ref.id
                if isinstance(p.incident_ref, NewIncident)
                else p.incident_ref,
            }
            for p in pending
        ]
        stmt = insert(_table(HealthTransitionRecord)).returning(
            _table(HealthTransitionRecord).c.id, sort_by_parameter_order=True
        )
        transition_ids = list((await session.execute(stmt, rows)).scalars())
        for p, row, transition_id in zip(pending, rows, transition_ids, strict=True):
            transitions.append(
                await publish_transition(p, row["incident_id"], transition_id, session, events)
            )

    if work:
        if states is None:  # incidents opened and transitions published may have moved a state
            states = store.prepare_states([_state_row(t, now) for t in work.values()])
        await store.write_states(session, states)
    return Applied(tracked=work, transitions=transitions, results_written=len(result_ids))


def _state_row(t: Tracked, now: datetime) -> tuple[Any, ...]:
    """One component state, in `result_rows.STATE_COLUMNS` order."""
    m = t.machine
    return (
        m.status,
        m.status_since or now,
        m.consecutive_failures,
        m.consecutive_successes,
        m.recent,
        m.grace_until,
        t.incident_id,
        t.last_check_at,
        t.last_outcome,
        t.last_detail,
        t.last_latency_ms,
        now,
        t.component_id,
    )


def _rows(session: AsyncSession) -> SQLiteRows | PostgresRows:
    name = session.get_bind().dialect.name
    store = _ROWS.get(name)
    if store is None:
        store = _ROWS[name] = rows_for(name)
    return store


_ROWS: dict[str, SQLiteRows | PostgresRows] = {}


def _table(model: type[Base]) -> Table:
    # A declarative model's __table__ is typed FromClause; these models are mapped to a Table.
    return cast(Table, model.__table__)
