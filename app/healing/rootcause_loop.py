"""The root-cause loop: every second, it moves the incidents ``rootcause`` holds or attributed along
their life (module ``app.healing.rootcause`` describes it): attributed to an upstream that turned
unhealthy, given their own window once the root recovered, released as the component's own when due
(one replica wins each release, by a conditional UPDATE)."""

from __future__ import annotations

import asyncio
import logging
import typing
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.components import graph
from app.db.models import Component, Incident
from app.db.session import session_scope
from app.db.types import utcnow
from app.healing import rootcause_hold as hold
from app.healing.rootcause import (
    SLACK_S,
    UNHEALTHY,
    component_states,
    detection_window,
    load_graph,
    monitored,
    note_caused_by,
    unhealthy_names,
)
from app.platform.events import EventBus, IncidentReleased
from app.platform.loops import LoopService

if TYPE_CHECKING:
    from app.config.settings import Settings
    from app.observability.metrics import GuardMetrics

log = logging.getLogger("pipeline_guard.rootcause")


class RootCauseLoop(LoopService):
    """Every second: attribute held incidents whose upstream turned unhealthy, give children of a
    recovered root their own window, release what is due (one replica wins each release)."""

    name = "root-cause"

    def __init__(
        self,
        sessionmaker: async_sessionmaker,
        settings: Settings,
        metrics: GuardMetrics,
        *,
        wake: asyncio.Event | None,
        events: EventBus | None = None,
        interval: float = 1.0,
    ) -> None:
        super().__init__(interval, metrics=metrics)
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.wake = wake  # the healing engine's (None when healing is disabled)
        self.events = events  # IncidentReleased, in the releasing transaction

    async def run_once(self) -> None:
        released: list[int] = []
        async with session_scope(self.sessionmaker) as session:
            held = (
                await session.execute(
                    select(Incident, Component.name)
                    .join(Component, Component.id == Incident.component_id)
                    .where(Incident.closed_at.is_(None), Incident.suppressed.is_(True))
                    .order_by(Incident.id)
                )
            ).all()
            if not held:
                return
            dag = await load_graph(session)
            names = sorted({a for _, name in held for a in graph.ancestors(dag, name)} | {n for _, n in held})
            states = await component_states(session, names)
            unhealthy = unhealthy_names(states)
            now = utcnow()
            for incident, name in held:
                if await self._step(session, incident, name, dag, states, unhealthy, now):
                    released.append(incident.id)
        if released and self.wake is not None:
            self.wake.set()

    async def _step(
        self,
        session: AsyncSession,
        incident: Incident,
        name: str,
        dag,
        states,
        unhealthy: set[str],
        now: datetime,
    ) -> bool:
        roots = graph.roots(dag, name, unhealthy)
        where = (Incident.id == incident.id, Incident.suppressed.is_(True))
        if roots:
            # A deeper root takes over (report held on etl, then db is found down: db); a shallower one
            # does not (db recovered, etl still unhealthy a moment longer: report's incident is still
            # db's doing).
            root = incident.caused_by or roots[0]
            if roots[0] in graph.ancestors(dag, root):
                root = roots[0]
            if incident.caused_by != root or incident.held_until is not None:
                await session.execute(update(Incident).where(*where).values(caused_by=root, held_until=None))
                await note_caused_by(session, self.settings, name, root)
            return False
        component, own = states.get(name, (None, None))
        if incident.caused_by is None:
            # Held: an upstream may have failed and been healed between two passes (a restart takes
            # well under a second), never seen unhealthy here. Its incident since the child's says so:
            # the child's failure was its doing, and the child gets its window as below.
            came_and_went = await _upstream_incident_since(session, dag, name, states, incident.opened_at)
            if came_and_went is not None:
                window = detection_window(component, self.settings) if component is not None else 0.0
                await session.execute(
                    update(Incident)
                    .where(*where)
                    .values(caused_by=came_and_went, held_until=now + timedelta(seconds=window + SLACK_S))
                )
                await note_caused_by(session, self.settings, name, came_and_went)
                return False
        if incident.caused_by is not None and incident.held_until is None:
            # The root recovered: the child gets its own threshold window to recover by itself.
            window = detection_window(component, self.settings) if component is not None else 0.0
            await session.execute(
                update(Incident).where(*where).values(held_until=now + timedelta(seconds=window + SLACK_S))
            )
            return False
        current = own is not None and own.current_incident_id == incident.id
        if incident.caused_by is None:
            # Held: the upstreams' own checks decide, not the nominal window alone (rootcause_hold).
            found = [states[a] for a in graph.ancestors(dag, name) if a in states]  # not deleted meanwhile
            ups = [_upstream(c, s, detection_window(c, self.settings)) for c, s in found]
            due = hold.releases(now, incident.opened_at, incident.held_until, ups)
        else:
            # Its root recovered: its own window, over once its own checks have run since (if they
            # drive this incident), not on the wall clock alone.
            root = states.get(incident.caused_by, (None, None))[1]
            recovered_at = root.status_since if root is not None and root.status == "healthy" else None
            due = hold.own_window_over(
                now,
                incident.held_until,
                recovered_at if current and component is not None and monitored(component) else None,
                own.last_check_at if own is not None else None,
                detection_window(component, self.settings) if component is not None else 0.0,
            )
        if not due:
            return False
        # Only for the incident the checks drive: an external one (a rule, Alertmanager) on a
        # component whose checks pass is released when due.
        if current and own.status not in UNHEALTHY:
            return False  # answering again: it closes by itself
        if current and own.consecutive_failures == 0 and own.last_check_at is not None:
            # Passing but not yet healthy (success_threshold): one more interval to get there.
            await session.execute(
                update(Incident)
                .where(*where)
                .values(held_until=now + timedelta(seconds=detection_window(component, self.settings)))
            )
            return False
        claimed = await session.execute(
            update(Incident).where(*where).values(suppressed=False, caused_by=None, held_until=None)
        )
        if typing.cast("CursorResult[Any]", claimed).rowcount != 1:  # an UPDATE's: a CursorResult
            return False  # another replica released it
        await _release_alert(session, self.settings, name)
        if self.events is not None:
            await self.events.publish(
                IncidentReleased(
                    component=name,
                    component_id=incident.component_id,
                    incident_id=incident.id,
                    opened_at=incident.opened_at,
                    at=now,
                ),
                session,
            )
        log.info("incident %s of %s is its own now: notified, healing may act", incident.id, name)
        return True


async def _upstream_incident_since(
    session: AsyncSession, dag, name: str, states, since: datetime
) -> str | None:
    """An upstream of ``name`` with an incident opened at or after ``since`` (the deepest such), or None."""
    ids = {entry[0].id: up for up in graph.ancestors(dag, name) if (entry := states.get(up)) is not None}
    if not ids:
        return None
    rows = await session.execute(
        select(Incident.component_id).where(Incident.component_id.in_(ids), Incident.opened_at >= since)
    )
    failed = {ids[cid] for cid in rows.scalars()}
    if not failed:
        return None
    return (graph.roots(dag, name, failed) or sorted(failed))[0]


def _upstream(component: Component, state, window_s: float) -> hold.Upstream:
    return hold.Upstream(
        monitored=monitored(component),
        heartbeat=(component.check or {}).get("kind") == "heartbeat",
        status=None if state is None else state.status,
        consecutive_failures=0 if state is None else state.consecutive_failures,
        last_check_at=None if state is None else state.last_check_at,
        last_ping_at=None if state is None else state.last_ping_at,
        window_s=window_s,
    )


def _known_healthy(entry, since: datetime) -> bool:
    if entry is None:
        return True  # deleted meanwhile: nothing upstream to wait for
    component, state = entry
    return hold.known_healthy(_upstream(component, state, 0.0), since)


async def _release_alert(session: AsyncSession, settings: Settings, component: str) -> None:
    from app.alerts.fingerprints import health_fingerprint
    from app.alerts.service import AlertService

    await AlertService(session, settings).release_held(health_fingerprint(component))
