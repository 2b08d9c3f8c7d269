"""Root cause: a component failing while something it depends on is unhealthy is not an incident of
its own. Its incident is attributed to that upstream root (``incidents.caused_by``), it notifies no
one (the root's alert lists the components it affects) and it is not healed while the root is
unhealthy. The children keep being checked.

An attributed or held incident is ``suppressed``. Its life, decided on the database rows only (so
every replica reaches the same verdict; a release is claimed by a conditional UPDATE, so exactly
one replica notifies):

- opened while an upstream (direct or transitive) is unhealthy -> attributed to the root at once;
- opened while every upstream looks healthy -> **held**: a child often fails before its upstream
  does (shorter period, lower threshold). It is released (its own: notified, healed) as soon as
  every upstream has passed a check since the child's incident opened (a heartbeat upstream must
  also have pinged since: its check passes until a ping is overdue), or at ``held_until``: the
  longest time an upstream needs to detect its own failure (interval x failure_threshold + timeout;
  a heartbeat: until its ping is overdue, its last ping + period + grace, then interval x
  failure_threshold; plus slack: ``noticed_by``). If an upstream turns
  unhealthy meanwhile, the held incident is attributed to it.
- the root recovers -> the child gets its own threshold window (``held_until`` = now + its interval
  x failure_threshold + timeout). Recovering by itself within it closes the incident with no
  notification and no action; still failing after it, the incident becomes its own.

The alert handlers ask ``is_suppressed``; the healing engine asks ``holds_healing`` (which also
refuses to act on any component while one of its upstreams is unhealthy, whatever its incident).
"""

from __future__ import annotations

import asyncio
import logging
import typing
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, text, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.components import graph
from app.db.models import Component, ComponentState, Incident
from app.db.models.components import HAS_DEPENDENCIES
from app.db.session import session_scope
from app.db.types import utcnow
from app.platform.events import EventBus, IncidentOpened, IncidentReleased
from app.platform.loops import LoopService

if TYPE_CHECKING:
    from app.config.settings import Settings
    from app.observability.metrics import GuardMetrics

log = logging.getLogger("pipeline_guard.rootcause")

UNHEALTHY = frozenset({"degraded", "critical", "failed", "recovering"})
SLACK_S = 5.0
GRAPH_KEY = "rootcause.graph"
CHILDREN_KEY = "rootcause.children"


async def load_graph(session: AsyncSession, *, cached: bool = False) -> dict[str, list[str]]:
    """The dependency graph's edges (``_load_edges``: ancestors, descendants and roots are the same
    as on the whole registry, and a status change does not read the fleet). ``cached``: once per
    transaction (a flush publishes one event per transition: a thousand components failing together
    must not read the graph a thousand times)."""
    txn = session.sync_session.get_transaction()
    hit = session.info.get(GRAPH_KEY)
    if cached and hit is not None and txn is not None and hit[0] is txn:
        return hit[1]
    dag = await _load_edges(session)
    session.info[GRAPH_KEY] = (session.sync_session.get_transaction(), dag)
    return dag


async def _load_edges(session: AsyncSession) -> dict[str, list[str]]:
    """The part of the graph that has edges: the components with ``depends_on`` and what they list.
    A component with neither can be no root cause, and /api/v1/status must not read the fleet: the
    condition is written as the partial index's (literally, so both dialects read that index)."""
    rows = (
        await session.execute(select(Component.name, Component.depends_on).where(text(HAS_DEPENDENCIES)))
    ).all()
    dag = {name: list(deps or []) for name, deps in rows if deps}
    for deps in list(dag.values()):
        for dep in deps:
            dag.setdefault(dep, [])
    return dag


async def _states(
    session: AsyncSession, names: list[str]
) -> dict[str, tuple[Component, ComponentState | None]]:
    if not names:
        return {}
    rows = (
        (await session.execute(select(Component).where(Component.name.in_(names)))).unique().scalars().all()
    )
    return {c.name: (c, c.state) for c in rows}


def _unhealthy(states: dict[str, tuple[Component, ComponentState | None]]) -> set[str]:
    return {
        name
        for name, (component, state) in states.items()
        if component.enabled and state is not None and state.status in UNHEALTHY
    }


def _status(state: ComponentState | None) -> str:
    if state is None:  # `_unhealthy` only names components with a state row
        raise ValueError("component without a state row")
    return state.status


def detection_window(component: Component, settings: Settings) -> float:
    """How long this component needs to notice its own failure: interval x failure_threshold + timeout
    (a heartbeat: its period and grace, then interval x failure_threshold)."""
    check = component.check or {}
    mon = settings.monitoring
    interval = float(check.get("interval") or mon.interval)
    threshold = int(check.get("failure_threshold") or mon.failure_threshold)
    if check.get("kind") == "heartbeat":
        # A missed ping is late after the period and its grace; then the checks need their threshold.
        return _ping_late(check) + interval * threshold
    timeout = float(check.get("timeout") or mon.health_check_timeout)
    return interval * threshold + timeout


def _ping_late(check: dict) -> float:
    """How long after a heartbeat's ping the next one is late: its period and grace. (A cron schedule
    has no fixed period: the gap to its next run is not known here.)"""
    return float(check.get("period_s") or 0) + float(check.get("grace_s") or 0)


def noticed_by(
    component: Component, state: ComponentState | None, settings: Settings, since: datetime
) -> datetime:
    """When this component will have noticed its own failure, had it failed by ``since``: ``since`` +
    its detection window; for a heartbeat that has pinged, counted from its last ping (its ping is
    late ``period + grace`` after it), not from ``since``: an hourly job that pinged 55 minutes ago is
    known dead or alive within minutes, one that pinged a minute ago not before the hour is over."""
    window = detection_window(component, settings)
    check = component.check or {}
    if check.get("kind") == "heartbeat" and state is not None and state.last_ping_at is not None:
        late = _ping_late(check)
        overdue = max(state.last_ping_at + timedelta(seconds=late), since)
        return overdue + timedelta(seconds=window - late)
    return since + timedelta(seconds=window)


async def affected(session: AsyncSession, component: str) -> list[str]:
    """The components that depend on ``component``, directly or transitively (for its alert)."""
    dag = await load_graph(session, cached=True)
    cached = session.info.get(CHILDREN_KEY)
    if cached is None or cached[0] is not dag:
        cached = (dag, graph.reverse(dag))
        session.info[CHILDREN_KEY] = cached
    children = cached[1]
    return graph.descendants(dag, component, children=children) if component in children else []


async def has_upstream(session: AsyncSession, component: str) -> bool:
    return bool((await load_graph(session, cached=True)).get(component))


async def root_causes(session: AsyncSession) -> list[dict[str, Any]]:
    """The graph's root causes: unhealthy components others depend on, with no unhealthy upstream."""
    dag = await _load_edges(session)
    if not dag:
        return []
    states = await _states(session, sorted(dag))
    unhealthy = _unhealthy(states)
    out = []
    for name in sorted(unhealthy):
        below = graph.descendants(dag, name)
        if below and not any(a in unhealthy for a in graph.ancestors(dag, name)):
            out.append(
                {
                    "component": name,
                    "status": _status(states[name][1]),
                    "affected": below,
                    "unhealthy": [b for b in below if b in unhealthy],
                }
            )
    return out


async def is_suppressed(session: AsyncSession, incident_id: int | None) -> tuple[bool, str | None]:
    """Whether this incident's notifications are held, and the root it is attributed to."""
    if incident_id is None:
        return False, None
    row = (
        await session.execute(
            select(Incident.suppressed, Incident.caused_by).where(Incident.id == incident_id)
        )
    ).first()
    if row is None:
        return False, None
    return bool(row.suppressed), row.caused_by


async def holds_healing(session: AsyncSession, incident_id: int, component: Component) -> bool:
    """No action on an attributed or held incident, nor on a component whose upstream is unhealthy.
    Only a component with ``depends_on`` is ever held: the others cost nothing here."""
    if not component.depends_on:
        return False
    suppressed, _ = await is_suppressed(session, incident_id)
    if suppressed:
        return True
    dag = await load_graph(session)
    ups = graph.ancestors(dag, component.name)
    return bool(ups and _unhealthy(await _states(session, ups)))


async def defer_to_upstream(
    session: AsyncSession, incident_id: int, component: str, settings: Settings, at: datetime
) -> str | None:
    """The component's own incident, failing again while its action was being verified, when an
    upstream is failing too (unhealthy, or failing checks below its threshold): that failure is the
    upstream's doing, not a verdict on the action. The incident is attributed to the unhealthy root
    (or held for the failing upstream) as if it had opened during the upstream's outage: the component
    is not acted on while the upstream is down, and once it recovers gets its own threshold window.
    Returns the upstream blamed, or None when every upstream passes its checks."""
    verdict = await _verdict(
        session,
        await load_graph(session),
        component,
        settings,
        at,
        held_for=lambda state: state is not None and state.consecutive_failures > 0,
    )
    if verdict is None:
        return None
    values, blamed = verdict
    await session.execute(
        update(Incident).where(Incident.id == incident_id, Incident.closed_at.is_(None)).values(**values)
    )
    if values["caused_by"] is not None:
        await _alert_meta(session, settings, component, blamed)
    return blamed


async def on_incident_opened(settings: Settings, event: IncidentOpened, session: AsyncSession) -> None:
    """Inside the opening transaction, before the alert handlers: attribute or hold."""
    dag = await load_graph(session, cached=True)
    verdict = await _verdict(session, dag, event.component, settings, event.at, held_for=lambda _: True)
    if verdict is not None:
        await session.execute(update(Incident).where(Incident.id == event.incident_id).values(**verdict[0]))


async def _verdict(
    session: AsyncSession,
    dag: dict[str, list[str]],
    component: str,
    settings: Settings,
    at: datetime,
    *,
    held_for: typing.Callable[[ComponentState | None], bool],
) -> tuple[dict[str, Any], str] | None:
    """How an incident of ``component`` opening ``at`` stands to its upstreams: attributed to the first
    unhealthy root, else held until the last monitored upstream that ``held_for`` picks would have
    noticed a failure. (the incident's column values, the upstream named), or None (nothing upstream
    to blame or wait for)."""
    ups = graph.ancestors(dag, component)
    if not ups:
        return None
    states = await _states(session, ups)
    roots = graph.roots(dag, component, _unhealthy(states))
    if roots:
        return {"suppressed": True, "caused_by": roots[0], "held_until": None}, roots[0]
    watched = [(c, s) for c, s in states.values() if _monitored(c) and held_for(s)]
    if not watched:
        return None  # nothing upstream is checked (or failing): nothing to wait for
    noticed = max(noticed_by(c, s, settings, at) for c, s in watched)
    held = {"suppressed": True, "caused_by": None, "held_until": noticed + timedelta(seconds=SLACK_S)}
    return held, sorted(c.name for c, _ in watched)[0]


class RootCauseHandler:
    """``IncidentOpened``: subscribed before the alert handlers, which read the verdict when they
    raise the component's alert."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def on_incident_opened(self, event: IncidentOpened, session: AsyncSession) -> None:
        await on_incident_opened(self.settings, event, session)


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
            states = await _states(session, names)
            unhealthy = _unhealthy(states)
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
                await _alert_meta(session, self.settings, name, root)
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
                await _alert_meta(session, self.settings, name, came_and_went)
                return False
        if incident.caused_by is not None and incident.held_until is None:
            # The root recovered: the child gets its own threshold window to recover by itself.
            window = detection_window(component, self.settings) if component is not None else 0.0
            await session.execute(
                update(Incident).where(*where).values(held_until=now + timedelta(seconds=window + SLACK_S))
            )
            return False
        due = incident.held_until is None or now >= incident.held_until
        if incident.caused_by is None and not due:
            due = all(_known_healthy(states.get(a), incident.opened_at) for a in graph.ancestors(dag, name))
        if not due:
            return False
        # Only for the incident the checks drive: an external one (a rule, Alertmanager) on a
        # component whose checks pass is released when due.
        current = own is not None and own.current_incident_id == incident.id
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


def _monitored(component: Component) -> bool:
    return bool(component.enabled and component.check)


def _known_healthy(entry, since: datetime) -> bool:
    if entry is None:
        return True  # deleted meanwhile: nothing upstream to wait for
    component, state = entry
    if not _monitored(component):
        return True  # disabled or unchecked: it will never pass a check, nothing to wait for
    if (component.check or {}).get("kind") == "heartbeat" and (
        state is None or state.last_ping_at is None or state.last_ping_at < since
    ):
        # A heartbeat check passes until the ping is overdue: only a ping since says the job lives.
        return False
    return (
        state is not None
        and state.status == "healthy"
        and state.consecutive_failures == 0
        and state.last_check_at is not None
        and state.last_check_at >= since
    )


async def _alert_meta(session: AsyncSession, settings: Settings, component: str, root: str) -> None:
    from app.alerts.service import AlertService
    from app.alerts.subscribers import health_fingerprint

    alert = await AlertService(session, settings).alerts.active_by_fingerprint(health_fingerprint(component))
    if alert is not None:
        alert.meta = {**(alert.meta or {}), "caused_by": root}
        await session.flush()


async def _release_alert(session: AsyncSession, settings: Settings, component: str) -> None:
    from app.alerts.service import AlertService
    from app.alerts.subscribers import health_fingerprint

    await AlertService(session, settings).release_held(health_fingerprint(component))
