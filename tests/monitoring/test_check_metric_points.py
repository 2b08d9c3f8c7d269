"""The numbers checks report are stored as metric points on their own path (per probe: an http
check's status code): points, rollups and series as the metrics API stores them, rules see them,
and a point the store would refuse never blocks the others."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from app.checks.base import CheckResult
from app.db.models import MetricAnomaly, MetricRollup, MetricSeries, metric_points
from app.metrics.compaction import RollupCompactor
from app.metrics.rollups import build_deltas
from app.metrics.validation import check_points
from app.monitoring.check_metrics import SingleValueDeltas
from tests.monitoring.conftest import add_component, mon_settings, monitored


async def test_status_codes_are_stored_like_pushed_points_and_rules_see_them(db_url, tmp_path, http_target):
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        await add_component(guard, "web", {"kind": "http", "url": http_target.url("/ok")})
        await add_component(guard, "api", {"kind": "http", "url": http_target.url("/500")})
        r = await guard.client.post(
            "/api/v1/rules",
            json={
                "name": "api-5xx",
                "component": "api",
                "metric_name": "status_code",
                "kind": "threshold",
                "params": {"operator": "ge", "value": 500},
                "severity": "critical",
            },
            headers=await guard.headers("admin"),
        )
        assert r.status_code == 201, r.text
        evaluator = guard.runtime.detection.evaluator
        await evaluator.run_once()  # rules loaded: only the ruled series are handed over

        await scheduler.run_once()
        await scheduler.run_once()
        await RollupCompactor(guard.runtime.core).run_once()  # builds the ten-minute and hour levels
        async with guard.session() as s:
            points = (await s.execute(select(metric_points.c.component, metric_points.c.value))).all()
            rollups = (
                await s.execute(
                    select(MetricRollup.component, MetricRollup.resolution, func.sum(MetricRollup.count))
                    .group_by(MetricRollup.component, MetricRollup.resolution)
                    .order_by(MetricRollup.component, MetricRollup.resolution)
                )
            ).all()
            series = {
                row.component: row.last_value for row in (await s.execute(select(MetricSeries))).scalars()
            }
        assert sorted(points) == [("api", 500.0), ("api", 500.0), ("web", 200.0), ("web", 200.0)]
        assert rollups == [(c, res, 2) for c in ("api", "web") for res in (60, 600, 3600)]
        assert series == {"api": 500.0, "web": 200.0}
        r = await guard.client.get(
            "/api/v1/metrics/summary",
            params={"component": "web", "metric_name": "status_code", "since": 3600},
            headers=await guard.headers("operator"),
        )
        assert r.status_code == 200, r.text
        assert r.json()["count"] == 2 and r.json()["p50"] == 200.0

        assert evaluator.queued == 2  # the api's two points; web has no rule
        await evaluator.run_once()
        async with guard.session() as s:
            fired = (await s.execute(select(MetricAnomaly))).scalars().all()
        assert [(a.component, a.metric_name, a.kind) for a in fired] == [("api", "status_code", "threshold")]


async def test_a_refused_point_or_a_deleted_component_does_not_block_the_others(db_url, tmp_path):
    settings = mon_settings(db_url, tmp_path, monitoring={"allow_unknown_metric_components": False})
    async with monitored(settings) as (guard, scheduler):
        await add_component(guard, "web", {"kind": "http", "url": "http://127.0.0.1:9/"})
        metrics = scheduler.check_metrics
        metrics.add("web", CheckResult.up("ok", metrics={"status_code": 200.0, "ratio": math.nan}))
        metrics.add("gone", CheckResult.up("ok", metrics={"status_code": 200.0}))  # deleted meanwhile
        metrics.add("web", CheckResult.up("ok", metrics={"rows in": 3.0, "big": 1e200, "exit_code": 0}))
        assert await metrics.flush() == 2
        assert metrics.buffered == 0
        assert (metrics.skipped_values, metrics.skipped_names, metrics.unknown_components) == (2, 1, 1)
        async with guard.session() as s:
            rows = (await s.execute(select(metric_points.c.component, metric_points.c.metric_name))).all()
        assert sorted(rows) == [("web", "exit_code"), ("web", "status_code")]


def test_single_value_deltas_are_the_rows_build_deltas_makes():
    now = datetime.now(UTC).replace(microsecond=0)
    values = [200.0, 503.0, 0.0, -4.5, 200.0, 1e-9, 1e12, 200.0]
    items = [
        {
            "component": f"svc-{i}",
            "metric_name": "status_code",
            "value": v,
            "timestamp": (now - timedelta(seconds=37 * i)).isoformat(),
        }
        for i, v in enumerate(values)
    ]
    batch = check_points(items, now=now)
    deltas = SingleValueDeltas()
    assert deltas.rows(batch) == build_deltas(batch)
    assert deltas.rows(batch) == build_deltas(batch)  # from its caches too


async def test_points_no_rule_watches_are_written_per_finished_minute(db_url, tmp_path):
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        for name in ("web", "api"):
            await add_component(guard, name, {"kind": "http", "url": "http://127.0.0.1:9/"})
        r = await guard.client.post(
            "/api/v1/rules",
            json={
                "name": "api-5xx",
                "component": "api",
                "metric_name": "status_code",
                "kind": "threshold",
                "params": {"operator": "ge", "value": 500},
            },
            headers=await guard.headers("admin"),
        )
        assert r.status_code == 201, r.text
        await guard.runtime.detection.evaluator.run_once()  # rules loaded
        metrics = scheduler.check_metrics
        metrics.batch_above_rate = 0.0  # a large fleet's rate
        now = datetime.now(UTC)
        minute_ago = now.replace(second=0, microsecond=0) - timedelta(minutes=2)
        started_minute = int(now.timestamp()) // 60
        for at in (minute_ago + timedelta(seconds=5), minute_ago + timedelta(seconds=15), now):
            metrics.add("web", CheckResult.up("ok", observed_at=at, metrics={"status_code": 200.0}))
        metrics.add("api", CheckResult.up("ok", observed_at=now, metrics={"status_code": 503.0}))

        # a tick: the watched series at once, the others' finished minute in one batch
        assert await metrics.tick() == 3
        if int(datetime.now(UTC).timestamp()) // 60 == started_minute:
            assert metrics.buffered == 1  # web's point of the current minute waits for its end
        async with guard.session() as s:
            deltas = (
                await s.execute(
                    select(MetricRollup.component, MetricRollup.resolution, MetricRollup.count).order_by(
                        MetricRollup.component, MetricRollup.resolution
                    )
                )
            ).all()
        assert deltas == [("api", 60, 1), ("web", 60, 2)]  # minute deltas: compaction builds the rest
        await metrics.flush()
        assert metrics.buffered == 0
        async with guard.session() as s:
            stored = (await s.execute(select(func.count()).select_from(metric_points))).scalar_one()
        assert stored == 4


async def test_a_full_buffer_drops_the_oldest_points(db_url, tmp_path, monkeypatch):
    from app.monitoring import check_metrics as module

    monkeypatch.setattr(module, "MAX_BUFFER", 5)
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        await add_component(guard, "web", {"kind": "http", "url": "http://127.0.0.1:9/"})
        await guard.runtime.detection.evaluator.run_once()  # rules loaded: none watches "web"
        metrics = scheduler.check_metrics
        start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=3)
        for i in range(7):  # minutes 0, 0, 0, 1, 1, 1, 2: the two oldest go
            at = start + timedelta(seconds=20 * i)
            metrics.add("web", CheckResult.up("ok", observed_at=at, metrics={"status_code": 200.0 + i}))
        assert (metrics.buffered, metrics.dropped) == (5, 2)
        assert metrics._ready() == 5  # the drain budget counts what is left of finished minutes
        assert await metrics.flush() == 5
        async with guard.session() as s:
            values = sorted((await s.execute(select(metric_points.c.value))).scalars())
        assert values == [202.0, 203.0, 204.0, 205.0, 206.0]


async def test_below_the_batching_rate_every_point_is_written_at_the_next_tick(db_url, tmp_path):
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        await add_component(guard, "web", {"kind": "http", "url": "http://127.0.0.1:9/"})
        await guard.runtime.detection.evaluator.run_once()  # rules loaded: none watches web
        metrics = scheduler.check_metrics
        await metrics.tick()  # starts the rate's interval
        metrics.add(
            "web", CheckResult.up("ok", observed_at=datetime.now(UTC), metrics={"status_code": 200.0})
        )
        assert await metrics.tick() == 1  # this minute's point, not held for the minute's end
        assert metrics.buffered == 0
        async with guard.session() as s:
            stored = (await s.execute(select(func.count()).select_from(metric_points))).scalar_one()
        assert stored == 1
