"""Summaries (exact on short raw ranges, within 1% over rollups), cache, compaction, retention."""

from __future__ import annotations

import math
import random
from datetime import timedelta

from sqlalchemy import func, select

from app.db.models import MetricRollup, metric_points
from app.metrics.compaction import RollupCompactor
from app.metrics.retention import MetricsRetention
from app.metrics.rollups import exact_summary
from tests.metrics.conftest import series


async def post_all(guard, points, headers):
    for i in range(0, len(points), 10_000):
        r = await guard.client.post("/api/v1/metrics/batch", json=points[i : i + 10_000], headers=headers)
        assert r.status_code == 201, r.text


async def summary(guard, **params):
    r = await guard.client.get(
        "/api/v1/metrics/summary",
        params={"component": "etl", "metric_name": "rows_processed", **params},
        headers=await guard.headers("viewer"),
    )
    assert r.status_code == 200, r.text
    return r.json()


async def test_summary_is_exact_on_small_data(guard, now):
    values = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0]
    await post_all(guard, series(now - timedelta(seconds=60), values), await guard.headers("ingest"))
    got = await summary(guard, since=120)
    want = exact_summary(values)
    assert got["exact"] is True
    for key in ("count", "mean", "min", "max", "stddev", "p50", "p95", "p99"):
        assert math.isclose(got[key], want[key], rel_tol=1e-12), key
    assert got["p50"] == 4.0 and got["p95"] == 7.5  # linear interpolation, as percentile_cont


async def test_summary_within_one_percent_on_large_data_and_cache(guard, now):
    rng = random.Random(7)
    n = 200_000
    start = now - timedelta(hours=3)
    values = [rng.lognormvariate(3.0, 0.8) for _ in range(n)]
    points = series(start, values, step=0.05, labels={"host": "a"})
    await post_all(guard, points, await guard.headers("ingest"))
    # an unaligned range across hour and minute edges: rollups inside, raw points at the ends
    lo, hi = start + timedelta(seconds=97.3), start + timedelta(seconds=9_000.7)
    inside = sorted(
        v for i, v in enumerate(values) if lo.timestamp() <= start.timestamp() + i * 0.05 < hi.timestamp()
    )
    want = exact_summary(inside)
    got = await summary(guard, start=lo.isoformat(), end=hi.isoformat())
    assert got["exact"] is False
    assert got["count"] == want["count"]
    assert got["min"] == want["min"] and got["max"] == want["max"]
    assert math.isclose(got["mean"], want["mean"], rel_tol=1e-9)
    assert math.isclose(got["stddev"], want["stddev"], rel_tol=1e-6)
    for q in ("p50", "p95", "p99"):
        assert abs(got[q] - want[q]) / want[q] <= 0.01, (q, got[q], want[q])

    stats = guard.runtime.status_sections["cache"]
    before = stats()["hits"]
    again = await summary(guard, start=lo.isoformat(), end=hi.isoformat())
    assert again == got and stats()["hits"] == before + 1

    # compaction merges deltas into one row per bucket and changes no answer
    compactor = RollupCompactor(guard.runtime.core)
    assert await compactor.run_once() > 0
    async with guard.session() as s:
        dupes = (
            await s.execute(
                select(func.count()).select_from(
                    select(MetricRollup.resolution, MetricRollup.bucket_start)
                    .group_by(MetricRollup.resolution, MetricRollup.bucket_start)
                    .having(func.count() > 1)
                    .subquery()
                )
            )
        ).scalar_one()
    assert dupes == 0
    guard.runtime.detection.cache.invalidate(["etl"])
    compacted = await summary(guard, start=lo.isoformat(), end=hi.isoformat())
    assert compacted["count"] == got["count"] and compacted["p99"] == got["p99"]
    assert math.isclose(compacted["mean"], got["mean"], rel_tol=1e-9)


async def test_write_invalidates_cached_summary(guard, now):
    h = await guard.headers("ingest")
    await post_all(guard, series(now - timedelta(seconds=30), [1.0, 2.0]), h)
    assert (await summary(guard, since=60))["count"] == 2
    await post_all(guard, series(now - timedelta(seconds=10), [3.0]), h)
    assert (await summary(guard, since=60))["count"] == 3


async def test_retention_removes_what_it_should_and_nothing_else(guard, now):
    h = await guard.headers("ingest")
    ages = {
        "40d": timedelta(days=40),
        "3d": timedelta(days=3),
        "30h": timedelta(hours=30),
        "1h": timedelta(hours=1),
    }
    for label, age in ages.items():
        await post_all(guard, series(now - age, [1.0, 2.0], labels={"age": label}), h)
    await RollupCompactor(guard.runtime.core).run_once()  # (fresh minute deltas are kept until then)
    retention = MetricsRetention(guard.runtime.core, batch=1)  # batch of 1: proves the batching loop drains
    deleted = await retention.run_once(now=now)
    assert deleted["points"] == 6
    async with guard.session() as s:
        raw = (
            await s.execute(
                select(metric_points.c.series_key, func.count()).group_by(metric_points.c.series_key)
            )
        ).all()
        rollups = (await s.execute(select(MetricRollup.resolution, MetricRollup.series_key))).all()
    assert dict(raw) == {'{"age":"1h"}': 2}
    minute = {k for res, k in rollups if res == 60}
    ten_minute = {k for res, k in rollups if res == 600}
    hour = {k for res, k in rollups if res == 3600}
    assert minute == ten_minute == {'{"age":"30h"}', '{"age":"1h"}'}
    assert hour == {'{"age":"3d"}', '{"age":"30h"}', '{"age":"1h"}'}
    assert await retention.run_once(now=now) == {
        "points": 0,
        "minute_rollups": 0,
        "ten_minute_rollups": 0,
        "hour_rollups": 0,
    }


async def test_a_small_series_over_a_long_window_is_summarised_exactly(guard, now):
    # Eight points spread over hours (so hour and minute rollups hold them), one of them an outlier:
    # sketch quantiles put p95 and p99 near 120; percentile_cont puts them between 120 and 400.
    values = [95.0, 100.0, 105.0, 110.0, 115.0, 118.0, 120.0, 400.0]
    await post_all(guard, series(now - timedelta(hours=5), values, step=1800), await guard.headers("ingest"))
    got = await summary(guard, since=86400)
    want = exact_summary(values)
    assert got["exact"] is True and got["count"] == 8 and got["max"] == 400.0
    for key in ("p50", "p95", "p99", "mean", "stddev"):
        assert math.isclose(got[key], want[key], rel_tol=1e-12), (key, got[key], want[key])
    assert math.isclose(got["p95"], 302.0) and math.isclose(got["p99"], 380.4)


async def test_summary_of_one_labelled_series_reads_only_that_series(guard, now):
    """Rollups and raw edges are both narrowed to the series the labels name."""
    start = now - timedelta(minutes=40)
    rng = random.Random(3)
    a = [rng.uniform(1.0, 2.0) for _ in range(8_000)]
    b = [rng.uniform(100.0, 200.0) for _ in range(8_000)]
    points = series(start, a, step=0.25, labels={"host": "a"}) + series(
        start, b, step=0.25, labels={"host": "b"}
    )
    await post_all(guard, points, await guard.headers("ingest"))
    lo, hi = start + timedelta(seconds=97.3), start + timedelta(seconds=1_900.7)
    inside = [v for i, v in enumerate(a) if lo.timestamp() <= start.timestamp() + i * 0.25 < hi.timestamp()]
    want = exact_summary(inside)
    got = await summary(guard, start=lo.isoformat(), end=hi.isoformat(), labels="host=a")
    assert got["exact"] is False and got["labels"] == {"host": "a"}
    assert got["count"] == want["count"] and got["min"] == want["min"] and got["max"] == want["max"]
    assert math.isclose(got["mean"], want["mean"], rel_tol=1e-9)
    both = await summary(guard, start=lo.isoformat(), end=hi.isoformat())
    assert both["count"] == 2 * want["count"] and both["max"] > 100.0
