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
  failure_threshold; plus slack: ``noticed_by``). ``held_until`` is a minimum: a guard running late
  waits past it for an upstream not checked since, or failing below its threshold
  (``rootcause_hold``). If an upstream turns unhealthy meanwhile, the held incident is attributed to it.
- the root recovers -> the child gets its own threshold window (``held_until`` = now + its interval
  x failure_threshold + timeout). Recovering by itself within it closes the incident with no
  notification and no action; still failing after it (and after one of its own checks since the
  root recovered), the incident becomes its own.

The alert handlers ask ``is_suppressed``; the healing engine asks ``holds_healing`` (which also
refuses to act on any component while one of its upstreams is unhealthy, whatever its incident).
This module gives the verdict when an incident opens; ``rootcause_loop`` moves held and attributed
incidents along afterwards.
"""

from __future__ import annotations

import logging
import typing
import weakref
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.components import graph
from app.db.models import Component, ComponentState, Incident
from app.db.models.components import HAS_DEPENDENCIES
from app.healing.rootcause_hold import SLACK_S, UNHEALTHY
from app.platform.events import IncidentOpened

if TYPE_CHECKING:
    from app.config.settings import Settings

log = logging.getLogger("pipeline_guard.rootcause")

GRAPH_KEY = "rootcause.graph"
CHILDREN_KEY = "rootcause.children"


async def load_graph(session: AsyncSession, *, cached: bool = False) -> dict[str, list[str]]:
    """The dependency graph's edges (``_load_edges``: ancestors, descendants and roots are the same
    as on the whole registry, and a status change does not read the fleet). ``cached``: once per
    transaction (a flush publishes one event per transition: a thousand components failing together
    must not read the graph a thousand times)."""
    txn = session.sync_session.get_transaction()
    hit = session.info.get(GRAPH_KEY)
    if cached and hit is not None and txn is not None and hit[0]() is txn:
        return hit[1]
    dag = await _load_edges(session)
    txn = session.sync_session.get_transaction()
    # A weak reference: the session's info must not keep its transaction (and so the session) alive
    # in a reference cycle, which only the cyclic garbage collector would free.
    if txn is not None:
        session.info[GRAPH_KEY] = (weakref.ref(txn), dag)
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


async def component_states(
    session: AsyncSession, names: list[str]
) -> dict[str, tuple[Component, ComponentState | None]]:
    if not names:
        return {}
    rows = (
        (await session.execute(select(Component).where(Component.name.in_(names)))).unique().scalars().all()
    )
    return {c.name: (c, c.state) for c in rows}


def unhealthy_names(states: dict[str, tuple[Component, ComponentState | None]]) -> set[str]:
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
    states = await component_states(session, sorted(dag))
    unhealthy = unhealthy_names(states)
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
    return bool(ups and unhealthy_names(await component_states(session, ups)))


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
        await note_caused_by(session, settings, component, blamed)
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
    states = await component_states(session, ups)
    roots = graph.roots(dag, component, unhealthy_names(states))
    if roots:
        return {"suppressed": True, "caused_by": roots[0], "held_until": None}, roots[0]
    watched = [(c, s) for c, s in states.values() if monitored(c) and held_for(s)]
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


def monitored(component: Component) -> bool:
    return bool(component.enabled and component.check)


async def note_caused_by(session: AsyncSession, settings: Settings, component: str, root: str) -> None:
    from app.alerts.fingerprints import health_fingerprint
    from app.alerts.service import AlertService

    alert = await AlertService(session, settings).alerts.active_by_fingerprint(health_fingerprint(component))
    if alert is not None:
        alert.meta = {**(alert.meta or {}), "caused_by": root}
        await session.flush()
