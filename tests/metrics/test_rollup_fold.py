"""The coarser rollup levels (ten minutes, hour) are built by compaction from the minute deltas ingest
writes; until then readers fold the fresh minute deltas into their answer. Every answer over every
level must be the same before, during and after compaction, with points arriving late and out of
order, and retention must not drop a fresh minute delta before compaction has rolled it up."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta

from sqlalchemy import func, select

from app.db.models import MetricRollup
from app.db.session import session_scope
from app.metrics.compaction import RollupCompactor, compact_round
from app.metrics.repository import MetricsRepository
from app.metrics.retention import MetricsRetention
from app.metrics.rollups import HOUR, MINUTE, TEN_MINUTES, merge_blobs, plan_range
from tests.metrics.conftest import point
from tests.metrics.test_metrics_summary_retention import post_all, summary


def ranges(now: datetime, rng: random.Random) -> list[tuple[float, float]]:
    """Ranges whose plans use every level (hours in the middle, ten minutes and minutes at the edges)."""
    end = now.timestamp()
    out = [(end - 5 * HOUR - 17.3, end - 7.9), (end - 4 * HOUR + 131.0, end - HOUR - 1234.5)]
    out += [(a, a + rng.uniform(2 * HOUR, 4 * HOUR)) for a in (end - 5 * HOUR + rng.uniform(0, HOUR),) * 4]
    out += [
        (a, a + rng.uniform(20 * MINUTE, 55 * MINUTE)) for a in (end - 3 * HOUR + rng.uniform(0, HOUR),) * 4
    ]
    levels = {res for a, b in out for res, _, _ in plan_range(a, b).rollups}
    assert levels == {MINUTE, TEN_MINUTES, HOUR}
    return out


async def answers(guard, spans, labels: dict | None) -> list[tuple]:
    """Per range: what the summary's inputs say (the merged sketch's exact state and raw values)."""
    key = None if labels is None else '{"host":"%s"}' % labels["host"]  # noqa: UP031 - the canonical JSON
    out = []
    async with guard.session() as s:
        repo = MetricsRepository(s)
        for a, b in spans:
            blobs, raw = await repo.summary_inputs("etl", "rows_processed", key, plan_range(a, b))
            sk = merge_blobs(blobs)
            out.append(
                (
                    sk.count,
                    sk.min if sk.count else None,
                    sk.max if sk.count else None,
                    sk.zero_count,
                    dict(sk.pos),
                    dict(sk.neg),
                    round(sk.sum, 6),
                    sorted(raw),
                )
            )
    return out


def truth(values: list[tuple[float, float]], a: float, b: float) -> int:
    return sum(1 for ts, _ in values if a <= ts < b)


async def test_every_level_answers_the_same_before_during_and_after_compaction(guard, now):
    rng = random.Random(11)
    spans = ranges(now, rng)
    headers = await guard.headers("ingest")
    sent: list[tuple[float, float]] = []

    def batch(n: int, hours: float, host: str) -> list[dict]:
        pts = []
        for _ in range(n):
            ts = now - timedelta(seconds=rng.uniform(1, hours * HOUR))
            value = rng.choice([0.0, -rng.uniform(0.1, 50), rng.lognormvariate(1, 1.5)])
            sent.append((ts.timestamp(), value))
            pts.append(point(value=value, labels={"host": host}, ts=ts))
        return pts  # random times: out of order within the batch

    # Compacted history first, then late points into the same buckets (and new ones) not compacted yet.
    for host in ("a", "b"):
        await post_all(guard, batch(1500, 5.5, host), headers)
    await RollupCompactor(guard.runtime.core).run_once()
    for i in range(6):
        await post_all(guard, batch(300, 5.5 if i % 2 else 1.5, "ab"[i % 2]), headers)

    pending = await answers(guard, spans, None)
    pending_a = await answers(guard, spans, {"host": "a"})
    for (a, b), got in zip(spans, pending, strict=True):
        assert got[0] + len(got[7]) == truth(sent, a, b)  # every point counted once, at every level

    # Round by round (small rounds: fresh deltas taken, coarser deltas pending, then merged).
    rounds = 0
    while True:
        async with session_scope(guard.runtime.sessionmaker) as session:
            n = await compact_round(session, 37)
        if n == 0:
            break
        rounds += 1
        if rounds % 3 == 1:
            assert await answers(guard, spans, None) == pending
    assert rounds > 3
    async with guard.session() as s:
        left = await s.scalar(
            select(func.count()).select_from(MetricRollup).where(MetricRollup.compacted.is_(False))
        )
    assert left == 0
    assert await answers(guard, spans, None) == pending
    assert await answers(guard, spans, {"host": "a"}) == pending_a


async def test_summary_over_every_level_is_the_same_before_and_after_compaction(guard, now):
    rng = random.Random(4)
    headers = await guard.headers("ingest")
    start = (now - timedelta(hours=4)).replace(minute=0, second=0)
    values = [rng.lognormvariate(1.0, 0.8) for _ in range(12_000)]
    times = [start + timedelta(seconds=i * 1.1) for i in range(len(values))]
    pts = [point(value=v, ts=t) for v, t in zip(values, times, strict=True)]
    rng.shuffle(pts)  # out of order
    await post_all(guard, pts[:6000], headers)
    await RollupCompactor(guard.runtime.core).run_once()
    await post_all(guard, pts[6000:], headers)  # late for the compacted buckets
    lo, hi = start + timedelta(minutes=7, seconds=3), start + timedelta(hours=3, minutes=41, seconds=9)
    assert {r for r, _, _ in plan_range(lo.timestamp(), hi.timestamp()).rollups} == {
        MINUTE,
        TEN_MINUTES,
        HOUR,
    }
    before = await summary(guard, start=lo.isoformat(), end=hi.isoformat())
    want = sum(1 for t in times if lo <= t < hi)
    assert before["count"] == want and before["exact"] is False
    await RollupCompactor(guard.runtime.core).run_once()
    guard.runtime.detection.cache.invalidate(["etl"])
    after = await summary(guard, start=lo.isoformat(), end=hi.isoformat())
    for field in ("count", "min", "max", "p50", "p95", "p99"):
        assert after[field] == before[field], field
    for field in ("sum", "mean", "stddev"):
        assert math.isclose(after[field], before[field], rel_tol=1e-9), field


async def test_retention_keeps_a_fresh_minute_delta_until_compaction_rolled_it_up(guard, now):
    """A late point older than the minute rollups' retention: its minute delta is all the hour level
    knows of it until compaction builds the hour delta from it."""
    old = (now - timedelta(days=3)).replace(minute=30, second=0)
    await post_all(
        guard,
        [point(value=v, ts=old + timedelta(seconds=i)) for i, v in enumerate((2.0, 5.0))],
        await guard.headers("ingest"),
    )
    retention = MetricsRetention(guard.runtime.core)
    assert (await retention.run_once(now=now))["minute_rollups"] == 0  # fresh: kept
    await RollupCompactor(guard.runtime.core).run_once()
    done = await retention.run_once(now=now)
    assert done["minute_rollups"] == 1 and done["ten_minute_rollups"] == 1 and done["hour_rollups"] == 0
    async with guard.session() as s:
        rows = (await s.execute(select(MetricRollup.resolution, MetricRollup.count, MetricRollup.sum))).all()
    assert [tuple(r) for r in rows] == [(HOUR, 2, 7.0)]
