"""The rollup levels (minute, ten minutes, hour): range plans, per-level consistency, summaries that
lean on the ten-minute level."""

from __future__ import annotations

import itertools
import math
import random
from datetime import UTC, datetime, timedelta

from app.metrics.compaction import RollupCompactor
from app.metrics.rollups import (
    HOUR,
    MINUTE,
    RAW_EXACT_SECONDS,
    RESOLUTIONS,
    TEN_MINUTES,
    exact_summary,
    plan_range,
)
from tests.metrics.conftest import series
from tests.metrics.levels import totals
from tests.metrics.test_metrics_summary_retention import post_all, summary


def test_plan_uses_the_coarsest_whole_buckets_and_covers_the_range_exactly():
    base = datetime(2024, 5, 1, 10, tzinfo=UTC).timestamp()
    start, end = base + 3 * 60 + 17, base + 3 * HOUR + 47 * 60 + 5  # 10:03:17 .. 13:47:05
    plan = plan_range(start, end)
    assert plan.raw == [(start, base + 4 * 60), (base + 3 * HOUR + 47 * 60, end)]
    assert plan.rollups == [
        (MINUTE, base + 4 * 60, base + 10 * 60),
        (TEN_MINUTES, base + 10 * 60, base + HOUR),
        (HOUR, base + HOUR, base + 3 * HOUR),
        (TEN_MINUTES, base + 3 * HOUR, base + 3 * HOUR + 40 * 60),
        (MINUTE, base + 3 * HOUR + 40 * 60, base + 3 * HOUR + 47 * 60),
    ]
    rng = random.Random(3)
    for _ in range(2000):
        a = base + rng.uniform(0, 3 * HOUR)
        b = a + rng.choice([rng.uniform(0, 400), rng.uniform(0, 5 * HOUR)])
        if b <= a:
            continue
        plan = plan_range(a, b)
        pieces = sorted([(x, y) for _, x, y in plan.rollups] + plan.raw)
        assert pieces[0][0] == a and pieces[-1][1] == b
        assert all(p[1] == q[0] for p, q in itertools.pairwise(pieces))  # contiguous, no overlap
        for res, x, y in plan.rollups:
            assert res in RESOLUTIONS and x % res == 0 and y % res == 0 and y > x
        # bounded cost: at most 10 ten-minute and 18 minute rows, whatever the range
        assert sum((y - x) / TEN_MINUTES for r, x, y in plan.rollups if r == TEN_MINUTES) <= 10
        assert sum((y - x) / MINUTE for r, x, y in plan.rollups if r == MINUTE) <= 18
        if b - a > RAW_EXACT_SECONDS:
            assert sum(y - x for x, y in plan.raw) < 2 * MINUTE
        else:  # short ranges are exact: raw points only
            assert plan.raw == [(a, b)] and not plan.rollups


async def test_every_level_counts_every_point_once(guard, now):
    rng = random.Random(5)
    start = now - timedelta(minutes=95)
    values = [rng.uniform(-5.0, 50.0) for _ in range(5_000)]  # negatives and positives
    points, h = series(start, values, step=1.1, labels={"host": "a"}), await guard.headers("ingest")
    for i in range(0, len(points), 1_500):  # several batches: several deltas per bucket
        await post_all(guard, points[i : i + 1_500], h)
    for compact in (False, True):
        if compact:
            assert await RollupCompactor(guard.runtime.core).run_once() > 0
        view = await totals(guard)  # as readers see the levels: fresh minute deltas folded in
        per_level: dict[int, list] = {}
        for key, (count, total, lo, hi) in view["buckets"].items():
            per_level.setdefault(key[0], []).append((count, total, lo, hi))
        assert set(per_level) == set(RESOLUTIONS)
        for buckets in per_level.values():
            assert sum(b[0] for b in buckets) == len(values)
            assert min(b[2] for b in buckets) == min(values) and max(b[3] for b in buckets) == max(values)
            assert math.isclose(sum(b[1] for b in buckets), math.fsum(values), rel_tol=1e-9)


async def test_summary_inside_one_hour_uses_ten_minute_rollups(guard, now):
    rng = random.Random(9)
    start = (now - timedelta(hours=2)).replace(minute=0, second=0)
    n = 40_000
    values = [rng.lognormvariate(1.0, 0.6) for _ in range(n)]
    await post_all(guard, series(start, values, step=0.09), await guard.headers("ingest"))
    lo, hi = start + timedelta(minutes=2, seconds=13.5), start + timedelta(minutes=57, seconds=41.2)
    assert any(res == TEN_MINUTES for res, _, _ in plan_range(lo.timestamp(), hi.timestamp()).rollups)
    inside = [
        v for i, v in enumerate(values) if lo.timestamp() <= start.timestamp() + i * 0.09 < hi.timestamp()
    ]
    want = exact_summary(inside)
    for compact in (False, True):
        if compact:
            await RollupCompactor(guard.runtime.core).run_once()
            guard.runtime.detection.cache.invalidate(["etl"])
        got = await summary(guard, start=lo.isoformat(), end=hi.isoformat())
        assert got["exact"] is False and got["count"] == want["count"]
        assert got["min"] == want["min"] and got["max"] == want["max"]
        assert math.isclose(got["mean"], want["mean"], rel_tol=1e-9)
        assert math.isclose(got["stddev"], want["stddev"], rel_tol=1e-6)
        for q in ("p50", "p95", "p99"):
            assert abs(got[q] - want[q]) / want[q] <= 0.01, (q, got[q], want[q])
