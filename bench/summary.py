"""Summary over 1M points of one series: the service (rollups + sketches) vs raw ``percentile_cont``
in Postgres, in the same run; the ratio and the quantile relative errors; and a one-hour window.

    .venv/bin/python bench/summary.py [--pg postgresql://postgres@127.0.0.1:5432/test] [--points 1000000]

Points are loaded through the service's own ingest path (validation, COPY, rollup deltas) in
10k batches, then the rollup compactor runs once (as its loop would), then both sides are timed
(p50 over repeated runs, cache disabled for the service side). The one-hour window is timed in
paired rounds (service, then raw ``percentile_cont`` over the same hour) and reported as median
and spread beside that baseline and the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._server import migrated_pg_database, sa_url


async def run(url: str, n: int, repeats: int) -> None:
    from sqlalchemy import text

    from app.db.session import session_scope
    from app.metrics.compaction import RollupCompactor
    from app.metrics.service import MetricsService
    from tests.conftest import make_settings, running_guard

    settings = make_settings(url, Path(tempfile.mkdtemp()))
    async with running_guard(settings) as guard:
        state = guard.runtime
        rng = random.Random(11)
        end = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
        step = 86_000 / n  # 1M points over ~24 h (inside raw retention): ~11.6 points/s
        start = end - timedelta(seconds=n * step)
        t0 = time.perf_counter()
        for b in range(0, n, 10_000):
            items = [
                {
                    "component": "etl",
                    "metric_name": "latency_seconds",
                    "value": rng.lognormvariate(-2.0, 0.7),
                    "timestamp": (start + timedelta(seconds=i * step)).timestamp(),
                }
                for i in range(b, min(b + 10_000, n))
            ]
            async with session_scope(state.sessionmaker) as session:
                await MetricsService(
                    session, state.core, cache=state.detection.cache, evaluator=state.detection.evaluator
                ).record(items)
        load_s = time.perf_counter() - t0
        compactor = RollupCompactor(state.core)
        while await compactor.run_once():
            pass

        async def service_summary(lo: datetime, hi: datetime) -> tuple[float, dict]:
            async with session_scope(state.sessionmaker) as session:
                svc = MetricsService(
                    session, state.core, cache=state.detection.cache, evaluator=state.detection.evaluator
                )
                t, c = time.perf_counter(), time.process_time()
                result = await svc._summarize("etl", "latency_seconds", None, lo.timestamp(), hi.timestamp())
                cpu_times.append(time.process_time() - c)
                return time.perf_counter() - t, result

        async def raw_summary(lo: datetime, hi: datetime) -> tuple[float, dict]:
            async with session_scope(state.sessionmaker) as session:
                t = time.perf_counter()
                row = (
                    await session.execute(
                        text(
                            "SELECT count(*), avg(value), min(value), max(value), stddev_pop(value), "
                            "percentile_cont(0.5) WITHIN GROUP (ORDER BY value), "
                            "percentile_cont(0.95) WITHIN GROUP (ORDER BY value), "
                            "percentile_cont(0.99) WITHIN GROUP (ORDER BY value) FROM metric_points "
                            "WHERE component = 'etl' AND metric_name = 'latency_seconds' "
                            "AND ts >= :lo AND ts < :hi"
                        ),
                        {"lo": lo, "hi": hi},
                    )
                ).one()
                return time.perf_counter() - t, dict(
                    zip(("count", "mean", "min", "max", "stddev", "p50", "p95", "p99"), row, strict=True)
                )

        cpu_times: list[
            float
        ] = []  # this process's CPU per service call (the machine is shared: wall time is noisy)
        lo, hi = start - timedelta(seconds=1), end + timedelta(seconds=1)
        svc_times, raw_times = [], []
        for _ in range(repeats):
            s, svc = await service_summary(lo, hi)
            svc_times.append(s)
        for _ in range(max(3, repeats // 4)):
            r, raw = await raw_summary(lo, hi)
            raw_times.append(r)
        hour_lo = end - timedelta(minutes=61, seconds=17)
        hour_times, hour_raw_times = [], []
        cpu_times.clear()
        for _ in range(repeats):
            h, hour = await service_summary(hour_lo, hour_lo + timedelta(hours=1))
            hour_times.append(h)
            h, hour_raw = await raw_summary(hour_lo, hour_lo + timedelta(hours=1))
            hour_raw_times.append(h)
        hour_cpu = list(cpu_times)

    svc_p50, raw_p50, hour_p50 = (statistics.median(x) * 1000 for x in (svc_times, raw_times, hour_times))
    print(f"loaded {n:,} points of one series through the service in {load_s:.1f}s ({n / load_s:,.0f}/s)")
    print(
        f"summary over {svc['count']:,} points: service p50 {svc_p50:.1f} ms vs raw percentile_cont "
        f"{raw_p50:.1f} ms -> {raw_p50 / svc_p50:.1f}x faster (target <= 50 ms)"
    )
    assert svc["count"] == raw["count"], (svc["count"], raw["count"])
    errs = {q: abs(svc[q] - raw[q]) / abs(raw[q]) for q in ("p50", "p95", "p99")}
    print(
        "quantile relative error vs percentile_cont: "
        + ", ".join(f"{q} {e * 100:.3f}%" for q, e in errs.items())
        + f"; mean {abs(svc['mean'] - raw['mean']) / raw['mean'] * 100:.2e}% (target <= 1%)"
    )
    herr = max(abs(hour[q] - hour_raw[q]) / abs(hour_raw[q]) for q in ("p50", "p95", "p99"))
    assert hour["count"] == hour_raw["count"], (hour["count"], hour_raw["count"])
    hour_raw_p50 = statistics.median(hour_raw_times) * 1000
    print(
        f"one-hour window ({hour['count']:,} points), {repeats} paired rounds: service p50 {hour_p50:.2f} ms "
        f"(min {min(hour_times) * 1000:.2f}, max {max(hour_times) * 1000:.2f}; target <= 5 ms) vs raw "
        "percentile_cont "
        f"p50 {hour_raw_p50:.1f} ms (min {min(hour_raw_times) * 1000:.1f}, max "
        f"{max(hour_raw_times) * 1000:.1f}); "
        f"max quantile error {herr * 100:.3f}%; load {os.getloadavg()[0]:.2f} (1 min)"
    )
    print(
        f"  service CPU per one-hour call (this process): p50 {statistics.median(hour_cpu) * 1000:.2f} ms "
        f"(min {min(hour_cpu) * 1000:.2f}, max {max(hour_cpu) * 1000:.2f})"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=21)
    args = ap.parse_args()
    with migrated_pg_database(args.pg) as dsn:
        asyncio.run(run(sa_url(dsn), args.points, args.repeats))


if __name__ == "__main__":
    main()
