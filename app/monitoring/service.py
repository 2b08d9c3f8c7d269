"""Status, history and uptime queries. Long windows read the hourly rollups plus the raw results
not rolled up yet, so their cost does not grow with the number of raw rows."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Text, case, cast, func, literal, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import NotFound
from app.db.models import (
    CheckResultRecord,
    CheckRollup,
    Component,
    ComponentState,
    HealthTransitionRecord,
    Incident,
)
from app.db.types import utcnow
from app.health.health_map import OK_STATUSES, UNHEALTHY
from app.monitoring.presentation import NEW, is_new
from app.monitoring.rollups import floor_hour, rollup_watermark
from app.monitoring.schemas import (
    ComponentStatusOut,
    DetailedStatus,
    HistoryOut,
    IncidentOut,
    ResultOut,
    RollupOut,
    SystemStatus,
    TransitionOut,
    UptimeOut,
)

if TYPE_CHECKING:
    from app.platform.runtime import Runtime

WINDOWS = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
RAW_ONLY_UP_TO = timedelta(hours=1)


class StatusService:
    def __init__(self, session: AsyncSession, state: Runtime):
        self.session = session
        self.state = state

    async def _component(self, name: str) -> Component:
        component = (
            (await self.session.execute(select(Component).where(Component.name == name)))
            .unique()
            .scalar_one_or_none()
        )
        if component is None:
            raise NotFound(f"component {name!r} not found")
        return component

    # ------------------------------------------------------------------ uptime
    async def counts(
        self, since: datetime, component_ids: list[int] | None = None
    ) -> tuple[dict[int, list[int]], str]:
        """component -> [checks, failures, degraded] since `since`, and which data answered."""
        totals: dict[int, list[int]] = {}
        raw_from, source = since, "raw"
        if utcnow() - since > RAW_ONLY_UP_TO + timedelta(minutes=1):
            watermark = await rollup_watermark(self.session)
            if watermark is not None and watermark > since:
                q = (
                    select(
                        CheckRollup.component_id,
                        func.sum(CheckRollup.count),
                        func.sum(CheckRollup.failures),
                        func.sum(CheckRollup.degraded),
                    )
                    .where(CheckRollup.hour >= floor_hour(since), CheckRollup.hour < watermark)
                    .group_by(CheckRollup.component_id)
                )
                if component_ids is not None:
                    q = q.where(CheckRollup.component_id.in_(component_ids))
                for cid, count, failures, degraded in (await self.session.execute(q)).all():
                    totals[cid] = [int(count or 0), int(failures or 0), int(degraded or 0)]
                raw_from, source = watermark, "rollups+raw"
        for cid, c in (await self._raw_counts(raw_from, None, component_ids)).items():
            t = totals.setdefault(cid, [0, 0, 0])
            for i in range(3):
                t[i] += c[i]
        return totals, source

    async def _raw_counts(
        self, start: datetime, end: datetime | None, component_ids: list[int] | None
    ) -> dict[int, list[int]]:
        """component -> [checks, failures, degraded] of the raw results in [start, end)."""
        q = (
            select(
                CheckResultRecord.component_id,
                func.count(),
                func.sum(case((CheckResultRecord.outcome == "down", 1), else_=0)),
                func.sum(case((CheckResultRecord.outcome == "degraded", 1), else_=0)),
            )
            .where(CheckResultRecord.observed_at >= start)
            .group_by(CheckResultRecord.component_id)
        )
        if end is not None:
            q = q.where(CheckResultRecord.observed_at < end)
        if component_ids is not None:
            q = q.where(CheckResultRecord.component_id.in_(component_ids))
        return {
            cid: [int(count or 0), int(failures or 0), int(degraded or 0)]
            for cid, count, failures, degraded in (await self.session.execute(q)).all()
        }

    async def uptime_buckets(
        self, starts: list[datetime], step: timedelta, component_ids: list[int] | None = None
    ) -> dict[int, list[list[int]]]:
        """component -> one [checks, failures, degraded] per bucket ``[start, start + step)``.

        ``starts`` are consecutive, hour-aligned and ``step`` apart (hours or days). Completed hours come
        from the rollups; the raw results answer only from the rollup watermark on, one grouped count
        per bucket that is not fully rolled up yet (normally the last one or two).
        """
        if not starts:
            return {}
        since, end = starts[0], starts[-1] + step
        out: dict[int, list[list[int]]] = {}

        def add(cid: int, index: int, c: list[int]) -> None:
            if 0 <= index < len(starts):
                bucket = out.setdefault(cid, [[0, 0, 0] for _ in starts])[index]
                for i in range(3):
                    bucket[i] += c[i]

        watermark = await rollup_watermark(self.session)
        raw_from = since
        if watermark is not None and watermark > since:
            q = select(
                CheckRollup.component_id,
                CheckRollup.hour,
                CheckRollup.count,
                CheckRollup.failures,
                CheckRollup.degraded,
            ).where(CheckRollup.hour >= since, CheckRollup.hour < min(watermark, end))
            if component_ids is not None:
                q = q.where(CheckRollup.component_id.in_(component_ids))
            for cid, hour, count, failures, degraded in (await self.session.execute(q)).all():
                add(
                    cid,
                    int((hour - since) // step),
                    [int(count or 0), int(failures or 0), int(degraded or 0)],
                )
            raw_from = watermark
        for index, start in enumerate(starts):
            if start + step <= raw_from:
                continue
            for cid, c in (await self._raw_counts(max(start, raw_from), start + step, component_ids)).items():
                add(cid, index, c)
        return out

    @staticmethod
    def percent(counts: list[int] | None) -> float | None:
        if not counts or counts[0] == 0:
            return None
        return round(100.0 * (counts[0] - counts[1]) / counts[0], 3)

    async def uptime(self, name: str, window: str) -> UptimeOut:
        component = await self._component(name)
        since = utcnow() - WINDOWS[window]
        totals, source = await self.counts(since, [component.id])
        c = totals.get(component.id, [0, 0, 0])
        return UptimeOut(
            component=name,
            window=window,
            since=since,
            checks=c[0],
            failures=c[1],
            degraded=c[2],
            uptime_percent=self.percent(c),
            source=source,
        )

    # ------------------------------------------------------------------ status
    async def system_status(self, limit: int | None = None, offset: int = 0) -> SystemStatus:
        """Overall health, the count per status (aggregated in SQL) and one page of monitored
        components by name (all of them when ``limit`` is None): the cost of a page does not grow
        with the fleet."""
        monitored = self._monitored()
        counts = self._counts_in_memory()
        in_memory = counts is not None
        if counts is None:
            counts = {
                status: int(n)
                for status, n in (
                    await self.session.execute(
                        select(ComponentState.status, func.count())
                        .join(Component, ComponentState.component_id == Component.id)
                        .where(*monitored)
                        .group_by(ComponentState.status)
                    )
                ).all()
            }
        page = (
            select(Component, ComponentState)
            .join(ComponentState, ComponentState.component_id == Component.id)
            .where(*monitored)
            .order_by(Component.name)
            .offset(offset)
        )
        if limit is not None:
            page = page.limit(limit)
        rows = (await self.session.execute(page)).unique().all()
        incident_ids = [s.current_incident_id for _, s in rows if s.current_incident_id]
        incidents: dict[int, Incident] = {}
        if incident_ids:
            found = (
                await self.session.execute(select(Incident).where(Incident.id.in_(incident_ids)))
            ).scalars()
            incidents = {i.id: i for i in found}
        totals, _ = await self.counts(
            utcnow() - WINDOWS["24h"], [c.id for c, _ in rows] if limit is not None else None
        )
        components = []
        for c, s in rows:
            incident = incidents.get(s.current_incident_id) if s.current_incident_id else None
            new = is_new(s.status, c.check, s.last_ping_at)
            components.append(
                ComponentStatusOut(
                    name=c.name,
                    status=NEW if new else s.status,
                    critical=c.critical,
                    status_since=s.status_since,
                    last_check_at=s.last_check_at,
                    last_outcome=s.last_outcome,
                    last_detail=s.last_detail,
                    last_latency_ms=s.last_latency_ms,
                    uptime_24h=None if new else self.percent(totals.get(c.id)),
                    current_incident=IncidentOut.model_validate(incident) if incident else None,
                )
            )
        # The scheduler's in-memory map is the freshest view when it holds the whole fleet; otherwise
        # (other replicas check a share of it) the rows answer, like the counts.
        overall = (
            self.state.overall_health() if in_memory else await self._overall_from_counts(counts, monitored)
        )
        return SystemStatus(
            overall_health=overall,
            timestamp=utcnow(),
            total=sum(counts.values()),
            limit=limit,
            offset=offset,
            counts_by_status=counts,
            components=components,
        )

    def _counts_in_memory(self) -> dict[str, int] | None:
        """Components per status from the scheduler's health map, which counts as it is written,
        when this process checks the whole fleet (one replica, or the one holding every lease) and
        has loaded it; None otherwise (several replicas each hold a share: the database counts)."""
        scheduler = self.state.monitoring.scheduler
        health = self.state.component_health
        if not health or not scheduler.holds_whole_fleet:
            return None
        return {status: n for status, n in health.counts.items() if n > 0}

    def _monitored(self) -> tuple[ColumnElement[bool], ...]:
        """Enabled components with a check. JSON null and {} are "no check" too (the scheduler skips a
        check without a kind); on Postgres they are compared as jsonb values, which costs a tenth of
        rendering every check as text."""
        if self.session.get_bind().dialect.name == "postgresql":
            no_check = (cast(literal("null", Text), JSONB), cast(literal("{}", Text), JSONB))
            has_check = cast(Component.check, JSONB).not_in(no_check)
        else:
            has_check = cast(Component.check, Text).not_in(("null", "{}"))
        return (Component.enabled.is_(True), Component.check.is_not(None), has_check)

    async def _overall_from_counts(self, counts: dict[str, int], monitored: tuple) -> str:
        """The overall health from the counts per status, and, when some component is neither healthy
        nor unknown, whether a critical one is critical or failed: one row at most, found from the
        status index, at any fleet size."""
        if not any(n for status, n in counts.items() if status not in OK_STATUSES):
            return "healthy"
        critical_down = (
            await self.session.execute(
                select(Component.id)
                .join(ComponentState, ComponentState.component_id == Component.id)
                .where(*monitored, Component.critical.is_(True), ComponentState.status.in_(UNHEALTHY))
                .limit(1)
            )
        ).first()
        return "critical" if critical_down is not None else "degraded"

    async def detailed(self) -> DetailedStatus:
        counts = Counter(
            dict(
                (
                    await self.session.execute(
                        select(ComponentState.status, func.count())
                        .join(Component, Component.id == ComponentState.component_id)
                        .where(Component.enabled.is_(True))
                        .group_by(ComponentState.status)
                    )
                ).all()
            )
        )
        open_incidents = (
            await self.session.execute(
                select(func.count()).select_from(Incident).where(Incident.closed_at.is_(None))
            )
        ).scalar_one()
        scheduler = self.state.monitoring.scheduler
        extra: dict[str, Any] = await self.state.status_sections.collect(self.state)
        return DetailedStatus(
            overall_health=self.state.overall_health(),
            timestamp=utcnow(),
            counts_by_status={k: int(v) for k, v in counts.items()},
            open_incidents=int(open_incidents),
            scheduler=scheduler.stats(),
            healing=extra.pop("healing", {}),
            cache=extra.pop("cache", {}),
            sections=extra,
        )

    # ------------------------------------------------------------------ history
    async def history(self, name: str, *, limit: int, offset: int, results_limit: int) -> HistoryOut:
        component = await self._component(name)
        cid = component.id
        total = (
            await self.session.execute(
                select(func.count())
                .select_from(HealthTransitionRecord)
                .where(HealthTransitionRecord.component_id == cid)
            )
        ).scalar_one()
        transitions = (
            (
                await self.session.execute(
                    select(HealthTransitionRecord)
                    .where(HealthTransitionRecord.component_id == cid)
                    .order_by(HealthTransitionRecord.at.desc(), HealthTransitionRecord.id.desc())
                    .limit(limit)
                    .offset(offset)
                )
            )
            .scalars()
            .all()
        )
        results = (
            (
                await self.session.execute(
                    select(CheckResultRecord)
                    .where(CheckResultRecord.component_id == cid)
                    .order_by(CheckResultRecord.observed_at.desc(), CheckResultRecord.id.desc())
                    .limit(results_limit)
                )
            )
            .scalars()
            .all()
        )
        hourly = (
            (
                await self.session.execute(
                    select(CheckRollup)
                    .where(CheckRollup.component_id == cid, CheckRollup.hour >= utcnow() - WINDOWS["24h"])
                    .order_by(CheckRollup.hour.desc())
                )
            )
            .scalars()
            .all()
        )
        return HistoryOut(
            component=name,
            transitions=[TransitionOut.model_validate(t) for t in transitions],
            transitions_total=int(total),
            limit=limit,
            offset=offset,
            recent_results=[ResultOut.model_validate(r) for r in results],
            hourly=[RollupOut.model_validate(h) for h in hourly],
        )
