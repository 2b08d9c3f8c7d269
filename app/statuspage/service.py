"""The status page's view model: overall health, components with 24 h / 7 d uptime bars, open alerts
and recent healing attempts. Everything is read through the domain services (monitoring, alerts,
healing); the template only formats what is here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts.service import AlertService
from app.alerts.silences import SilenceService, silence_matches
from app.alerts.windows import open_window
from app.db.models import Component
from app.db.types import utcnow
from app.healing.rootcause import root_causes
from app.healing.service import HealingService
from app.monitoring.rollups import floor_hour
from app.monitoring.service import StatusService

if TYPE_CHECKING:
    from app.platform.runtime import Runtime

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
OPEN_ALERT_STATUSES = ["firing", "acknowledged"]
MAX_ALERTS = 50
MAX_HEALINGS = 10
MAX_UPCOMING_WINDOWS = 5
# A bucket at or above this share of successful checks is shown as fully up.
UP_AT = 99.9
PARTIAL_AT = 95.0

STATUS_LABELS = {
    "healthy": "Operational",
    "degraded": "Degraded",
    "recovering": "Recovering",
    "critical": "Outage",
    "failed": "Failed",
    "unknown": "No data yet",
    "new": "Waiting for the first ping",
}
OVERALL_LABELS = {
    "healthy": "All systems operational",
    "degraded": "Some systems degraded",
    "critical": "Major outage",
}


@dataclass(frozen=True)
class Segment:
    """One bar of an uptime strip: an hour (24 h strip) or a day (7 d strip)."""

    start: datetime
    checks: int
    failures: int
    degraded: int
    percent: float | None
    level: str  # up | partial | down | none (CSS class)
    title: str  # tooltip / accessible label


@dataclass(frozen=True)
class ComponentView:
    name: str
    status: str
    status_label: str
    critical: bool
    status_since: datetime | None
    last_check_at: datetime | None
    last_detail: str | None
    uptime_24h: float | None
    uptime_7d: float | None
    bars_24h: list[Segment]
    bars_7d: list[Segment]
    incident_id: int | None = None
    in_maintenance: bool = False


@dataclass(frozen=True)
class MaintenanceView:
    id: int
    name: str | None
    target: str  # the component (pattern) and labels it covers
    opens: datetime
    closes: datetime
    recurring: bool
    comment: str


@dataclass(frozen=True)
class AlertView:
    id: int
    component: str
    severity: str
    status: str
    message: str
    first_seen: datetime
    last_seen: datetime
    count: int


@dataclass(frozen=True)
class HealingView:
    id: int
    component: str
    strategy: str
    state: str
    trigger: str
    attempt_number: int
    created_at: datetime
    # No detail: it names the action's target ("POST http://host/path answered 200"), and the page
    # is public by default. Operators read it through /api/v1/healing/attempts.


@dataclass(frozen=True)
class StatusPage:
    overall: str
    overall_label: str
    generated_at: datetime
    components: list[ComponentView]
    alerts: list[AlertView]
    alerts_total: int
    healings: list[HealingView]
    # The dependency graph: unhealthy components others depend on, and who is attributed to whom.
    root_causes: list[dict] = field(default_factory=list)
    caused_by: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    maintenance_open: list[MaintenanceView] = field(default_factory=list)
    maintenance_next: list[MaintenanceView] = field(default_factory=list)


def _level(percent: float | None) -> str:
    if percent is None:
        return "none"
    if percent >= UP_AT:
        return "up"
    if percent >= PARTIAL_AT:
        return "partial"
    return "down"


def _segments(starts: list[datetime], step: timedelta, counts: list[list[int]] | None) -> list[Segment]:
    fmt = "%d %b %H:%M" if step == HOUR else "%a %d %b"
    segments = []
    for index, start in enumerate(starts):
        checks, failures, degraded = counts[index] if counts else (0, 0, 0)
        percent = StatusService.percent([checks, failures, degraded])
        when = start.strftime(fmt) + " UTC"
        if percent is None:
            title = f"{when}: no checks"
        else:
            title = f"{when}: {percent:.2f}% up ({checks} checks, {failures} failed"
            title += f", {degraded} degraded)" if degraded else ")"
        segments.append(Segment(start, checks, failures, degraded, percent, _level(percent), title))
    return segments


def _overall_percent(counts: list[list[int]] | None) -> float | None:
    if not counts:
        return None
    total = [sum(c[i] for c in counts) for i in range(3)]
    return StatusService.percent(total)


def bucket_starts(now: datetime, step: timedelta, count: int) -> list[datetime]:
    """``count`` consecutive bucket starts ending with the bucket that contains ``now``."""
    last = floor_hour(now) if step == HOUR else floor_hour(now).replace(hour=0)
    return [last - step * (count - 1 - i) for i in range(count)]


class StatusPageService:
    def __init__(self, session: AsyncSession, state: Runtime):
        self.session = session
        self.state = state
        self.status = StatusService(session, state)

    async def build(self) -> StatusPage:
        now = utcnow()
        system = await self.status.system_status()
        names = [c.name for c in system.components]
        ids: dict[str, int] = {}
        if names:
            rows = await self.session.execute(
                select(Component.name, Component.id).where(Component.name.in_(names))
            )
            ids = dict(rows.all())
        hours = bucket_starts(now, HOUR, 24)
        days = bucket_starts(now, DAY, 7)
        hourly = await self.status.uptime_buckets(hours, HOUR, list(ids.values()))
        daily = await self.status.uptime_buckets(days, DAY, list(ids.values()))

        silences = SilenceService(self.session)
        open_now = await silences.active(now)
        labels = (
            dict(
                (
                    await self.session.execute(
                        select(Component.name, Component.labels).where(Component.name.in_(names))
                    )
                ).all()
            )
            if names
            else {}
        )
        components = []
        for c in system.components:
            cid = ids.get(c.name)
            status = str(c.status)
            # A new (never pinged) component has no uptime to show, not 100 %.
            by_hour = None if cid is None or status == "new" else hourly.get(cid)
            by_day = None if cid is None or status == "new" else daily.get(cid)
            components.append(
                ComponentView(
                    name=c.name,
                    status=status,
                    status_label=STATUS_LABELS.get(status, status.title()),
                    critical=c.critical,
                    status_since=c.status_since,
                    last_check_at=c.last_check_at,
                    last_detail=c.last_detail,
                    uptime_24h=_overall_percent(by_hour),
                    uptime_7d=_overall_percent(by_day),
                    bars_24h=_segments(hours, HOUR, by_hour),
                    bars_7d=_segments(days, DAY, by_day),
                    incident_id=c.current_incident.id if c.current_incident else None,
                    in_maintenance=any(
                        silence_matches(s, c.name, labels.get(c.name) or {}) for s in open_now
                    ),
                )
            )

        alerts, alerts_total = await AlertService(self.session, self.state.settings).list(
            limit=MAX_ALERTS,
            offset=0,
            statuses=OPEN_ALERT_STATUSES,
            severity=None,
            component=None,
            since=None,
        )
        attempts, _ = await HealingService(self.session, self.state.core).list_attempts(limit=MAX_HEALINGS)
        counts: dict[str, int] = {}
        for view in components:
            counts[view.status] = counts.get(view.status, 0) + 1
        overall = str(system.overall_health)
        return StatusPage(
            overall=overall,
            overall_label=OVERALL_LABELS.get(overall, overall.title()),
            generated_at=now,
            components=components,
            root_causes=await root_causes(self.session),
            caused_by={
                c.name: c.current_incident.caused_by
                for c in system.components
                if c.current_incident and c.current_incident.caused_by
            },
            alerts=[
                AlertView(
                    a.id, a.component, a.severity, a.status, a.message, a.first_seen, a.last_seen, a.count
                )
                for a in alerts
            ],
            alerts_total=alerts_total,
            healings=[
                HealingView(h.id, h.component, h.strategy, h.state, h.trigger, h.attempt_number, h.created_at)
                for h in attempts
            ],
            counts=counts,
            maintenance_open=[
                _maintenance_view(s, *window) for s in open_now if (window := open_window(s, now)) is not None
            ],  # active() kept open ones only
            maintenance_next=[
                _maintenance_view(s, opens, closes)
                for s, opens, closes in await silences.upcoming(now, limit=MAX_UPCOMING_WINDOWS)
            ],
        )


def _maintenance_view(silence, opens: datetime, closes: datetime) -> MaintenanceView:
    target = silence.component or "every component"
    if silence.labels:
        target += " with " + ", ".join(f"{k}={v}" for k, v in sorted(silence.labels.items()))
    return MaintenanceView(
        silence.id, silence.name, target, opens, closes, bool(silence.schedule), silence.comment
    )
