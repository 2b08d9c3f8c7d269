"""Metrics use cases: ingest (validated, all-or-nothing), queries, summaries, latest, components."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import BadRequest, ValidationFailed
from app.metrics.cache import MISSING, MetricsCache
from app.metrics.repository import MetricsRepository
from app.metrics.rollups import (
    empty_summary,
    exact_summary,
    merge_blobs,
    plan_range,
    sketch_of,
    sketch_summary,
)
from app.metrics.validation import Batch, check_points, series_key

# At most this many points in the range: the summary is computed exactly from the raw points.
EXACT_MAX_POINTS = 5000

if TYPE_CHECKING:
    from app.detection.evaluator import RuleEvaluator
    from app.platform.core import Core


class MetricsService:
    def __init__(
        self, session: AsyncSession, state: Core, *, cache: MetricsCache, evaluator: RuleEvaluator | None
    ):
        """``evaluator``: the rule evaluator stored batches are handed to (None: stored only)."""
        self.session = session
        self.state = state
        self.repo = MetricsRepository(session)
        self.cache = cache
        self.evaluator = evaluator

    # --- ingest ------------------------------------------------------------------------------
    async def record(self, items: list[Any]) -> int:
        """Validate raw point dicts (in-process callers) and ingest them."""
        return await self.ingest(check_points(items))

    async def ingest(self, batch: Batch) -> int:
        """Store a validated batch: raw points, rollup deltas and series, all or nothing."""
        await self._refuse_unknown(batch)
        await self.repo.store(batch)
        components = batch.components
        self.cache.invalidate(components)
        counter, stored = self.state.metrics.points_ingested, len(batch)
        event.listen(
            self.session.sync_session, "after_commit", lambda _session: counter.inc(stored), once=True
        )
        evaluator = self.evaluator
        if evaluator is not None:
            await evaluator.learn_watched(self.session)  # reads only before the evaluator's first load
        if evaluator is not None and evaluator.wants_any(components):
            # Handed to the rule evaluator only once this transaction has committed: a batch that
            # rolls back is never evaluated. The evaluator loop drains its queue every second.
            event.listen(
                self.session.sync_session,
                "after_commit",
                lambda _session: evaluator.offer(
                    batch.points(lambda s: evaluator.wants(s.component, s.metric_name))
                ),
                once=True,
            )
        return len(batch)

    async def _refuse_unknown(self, batch: Batch) -> None:
        if self.state.settings.pipeline.monitoring.allow_unknown_metric_components:
            return
        names = batch.components
        unknown = names - await self.repo.known_components(names)
        if unknown:
            if batch.entries is not None:  # the series shape: name the entries (each is wholly invalid)
                entries = [(batch.series[sid].component, size) for sid, size in batch.entries]
                errors = [
                    {"series": i, "field": "component", "message": f"unknown component {component!r}"}
                    for i, (component, _size) in enumerate(entries)
                    if component in unknown
                ]
                invalid = sum(size for component, size in entries if component in unknown)
            else:
                errors = [
                    {"index": i, "field": "component", "message": f"unknown component {p.component!r}"}
                    for i, p in enumerate(batch.points())
                    if p.component in unknown
                ]
                invalid = len(errors)
            raise ValidationFailed(
                f"{invalid} of {len(batch)} points name unknown components; nothing was stored "
                "(pipeline.monitoring.allow_unknown_metric_components is off)",
                details={"errors": errors[:10_000], "invalid_points": invalid, "total_points": len(batch)},
            )

    # --- reads -------------------------------------------------------------------------------
    async def query(
        self,
        *,
        component: str | None,
        metric_name: str | None,
        labels: dict[str, str] | None,
        start: datetime | None,
        end: datetime | None,
        limit: int,
        offset: int,
    ) -> list[dict[str, Any]]:
        return await self.repo.points(
            component=component,
            metric_name=metric_name,
            series_key=series_key(labels) if labels else None,
            start=start,
            end=end,
            limit=limit,
            offset=offset,
        )

    async def latest(self, component: str | None, names: list[str] | None) -> list[dict[str, Any]]:
        key = ("latest", component, tuple(sorted(names or ())))
        cached = self.cache.get(key)
        if cached is not MISSING:
            return cached
        gen = self.cache.generation(component)
        rows = [
            {
                "component": s.component,
                "metric_name": s.metric_name,
                "labels": s.labels,
                "value": s.last_value,
                "timestamp": s.last_ts,
            }
            for s in await self.repo.latest(component, names)
        ]
        self.cache.put(key, component, rows, gen)
        return rows

    async def summary(
        self,
        *,
        component: str,
        metric_name: str,
        labels: dict[str, str] | None,
        since: float | None,
        start: datetime | None,
        end: datetime | None,
    ) -> dict[str, Any]:
        now = datetime.now(UTC)
        if since is not None:
            if start is not None:
                raise BadRequest("give either since or start/end, not both")
            start, end = now - timedelta(seconds=since), now
        if start is None:
            start = now - timedelta(seconds=self.state.settings.pipeline.monitoring.metrics_retention)
        end = end or now
        if end <= start:
            raise BadRequest("end must be after start")
        skey = series_key(labels) if labels else None
        # Relative windows are keyed by their length (a cached "last hour" may lag by the TTL).
        key = ("summary", component, metric_name, skey, since if since is not None else (start, end))
        cached = self.cache.get(key)
        if cached is not MISSING:
            return cached
        gen = self.cache.generation(component)
        result = await self._summarize(component, metric_name, skey, start.timestamp(), end.timestamp())
        result.update(
            {
                "component": component,
                "metric_name": metric_name,
                "labels": labels or {},
                "start": start,
                "end": end,
            }
        )
        self.cache.put(key, component, result, gen)
        return result

    async def _summarize(
        self, component: str, metric_name: str, skey: str | None, start: float, end: float
    ) -> dict[str, Any]:
        plan = plan_range(start, end)
        blobs, raw = await self.repo.summary_inputs(component, metric_name, skey, plan)
        if not blobs:
            return exact_summary(raw) if raw else empty_summary()
        sk = merge_blobs(blobs)
        if raw:
            sk.merge(sketch_of(raw))
        if sk.count <= EXACT_MAX_POINTS:
            # A small series: sketch quantiles of a handful of points can be far off (one outlier among
            # eight is p95 in percentile_cont, not in a sketch), and the raw points are cheap to read.
            # Exact only while retention still holds every point the rollups counted.
            values = await self.repo.raw_values(
                component,
                metric_name,
                skey,
                datetime.fromtimestamp(start, UTC),
                datetime.fromtimestamp(end, UTC),
                EXACT_MAX_POINTS + 1,
            )
            if len(values) == sk.count:
                return exact_summary(values)
        return sketch_summary(sk)

    async def unknown_components(self) -> list[dict[str, Any]]:
        return await self.repo.unknown_components()
