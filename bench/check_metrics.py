"""The per-probe metric points (an http check's `status_code`): CPU to store one second of them at
20,000 components @ 10 s (2,000 points), and what the rollup compactor then spends on their deltas,
on the check path (`CheckMetrics.add` + `flush`) beside the generic ingest path
(`MetricsService.record` on the same points as dicts, what the check path did before), in paired
rounds in the same process and database. The check path is measured twice: one point per series
per batch (a series a rule watches, written every second) and a series' minute in one batch (six
points @ 10 s: the others, written once their minute is over).

    .venv/bin/python bench/check_metrics.py [--points 2000] [--rounds 9] [--postgres postgresql://...]

CPU is the process' (event loop + the SQLite driver's thread; on Postgres the server's own CPU is not
counted), per point. Median and spread (min-max) over rounds; the ratios of medians; the load.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


async def add_components(sessionmaker, n: int) -> list[str]:
    from sqlalchemy import insert

    from app.db.models import Component
    from app.db.session import session_scope

    names = [f"svc-{i:05d}" for i in range(n)]
    async with session_scope(sessionmaker) as session:
        for start in range(0, n, 2000):
            await session.execute(
                insert(Component),
                [
                    {
                        "name": name,
                        "description": "",
                        "critical": False,
                        "labels": {},
                        "enabled": True,
                        "source": "api",
                        "version": 1,
                        "check": {"kind": "http", "url": "http://127.0.0.1:9/", "interval": 10},
                    }
                    for name in names[start : start + 2000]
                ],
            )
    return names


async def run(url: str, args) -> None:
    from tests.conftest import make_settings

    with tempfile.TemporaryDirectory(prefix="bench-check-metrics-") as data_dir:
        await measure(make_settings(url, Path(data_dir)), args)


async def measure(settings, args) -> None:
    from app.checks.base import CheckResult
    from app.db.session import session_scope
    from app.metrics.compaction import RollupCompactor
    from app.metrics.service import MetricsService
    from tests.conftest import running_guard

    async with running_guard(settings, build_services=lambda _rt: []) as guard:
        rt = guard.runtime
        check_metrics = rt.monitoring.scheduler.check_metrics
        await rt.detection.evaluator.run_once()  # rules loaded (none): no series is watched
        compactor = RollupCompactor(rt.core)
        names = await add_components(rt.sessionmaker, args.components)
        offset = 0

        def results(per_series: int) -> list[tuple[str, CheckResult]]:
            """``args.points`` results: one per component now, or ``per_series`` per component spread
            over the last minute (a probe every 10 s)."""
            nonlocal offset
            series = args.points // per_series
            chosen = [names[(offset + i) % len(names)] for i in range(series)]
            offset += series
            now = datetime.now(UTC)
            minute = now.replace(second=0, microsecond=0) - timedelta(minutes=1)
            times = [now] if per_series == 1 else [minute + timedelta(seconds=10 * k + 1) for k in range(6)]
            return [
                (
                    name,
                    CheckResult.up("HTTP 200 in 1 ms", 0.001, observed_at=at, metrics={"status_code": 200.0}),
                )
                for name in chosen
                for at in times[:per_series]
            ]

        async def generic(checked: list[tuple[str, CheckResult]]) -> None:
            # What the check path did before: a dict per point, its timestamp as ISO text, the API's
            # validation, the service's store, cache invalidation and rule hand-over.
            items = [
                {
                    "component": name,
                    "metric_name": metric,
                    "value": value,
                    "timestamp": r.observed_at.isoformat(),
                }
                for name, r in checked
                for metric, value in r.metrics.items()
            ]
            async with session_scope(rt.sessionmaker) as session:
                await MetricsService(
                    session, rt.core, cache=rt.detection.cache, evaluator=rt.detection.evaluator
                ).record(items)

        async def check_path(checked: list[tuple[str, CheckResult]]) -> None:
            for name, r in checked:
                check_metrics.add(name, r)
            await check_metrics.flush()

        # side -> (store, points per series in one batch)
        sides = {
            "generic, per probe": (generic, 1),
            "check path, per probe": (check_path, 1),
            "check path, per minute": (check_path, 6),
        }
        figures: dict[str, list[tuple[float, float, float]]] = {side: [] for side in sides}
        for fn, per_series in sides.values():  # warm-up: caches, prepared statements, the series rows
            await fn(results(per_series))
            await compactor.run_once()
        for _ in range(args.rounds):
            for side, (fn, per_series) in sides.items():
                checked = results(per_series)  # the probes' results are made outside the timed part
                cpu0, wall0 = time.process_time(), time.perf_counter()
                await fn(checked)
                cpu1 = time.process_time()
                await compactor.run_once()  # what the compactor loop later spends on these deltas
                figures[side].append((cpu1 - cpu0, time.perf_counter() - wall0, time.process_time() - cpu1))
        print(
            f"{args.points} check metric points per write ({args.components} components), "
            f"{args.rounds} paired rounds, db={'postgres' if args.postgres else 'sqlite'}, "
            "CPU per point, median (min-max):"
        )
        totals = {}
        for side, rows in figures.items():
            store = sorted(1e6 * c / args.points for c, _, _ in rows)
            compact = sorted(1e6 * k / args.points for _, _, k in rows)
            total = sorted(1e6 * (c + k) / args.points for c, _, k in rows)
            totals[side] = statistics.median(total)
            print(
                f"  {side:23s} store {statistics.median(store):5.1f} us ({store[0]:.1f}-{store[-1]:.1f})"
                f"  compaction {statistics.median(compact):5.1f} us ({compact[0]:.1f}-{compact[-1]:.1f})"
                f"  total {totals[side]:5.1f} us ({total[0]:.1f}-{total[-1]:.1f})"
            )
        base = totals["generic, per probe"]
        for side in list(sides)[1:]:
            print(f"  {side} / generic, per probe (total CPU, medians): {totals[side] / base:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=2000, help="points per flush (default 2000)")
    parser.add_argument("--components", type=int, default=20000, help="components (default 20000)")
    parser.add_argument("--rounds", type=int, default=9, help="paired rounds (default 9)")
    parser.add_argument("--postgres", help="postgresql://.../db: a scratch database is made beside it")
    args = parser.parse_args()
    if args.postgres:
        from bench._server import migrated_pg_database, sa_url

        with migrated_pg_database(args.postgres.replace("postgresql+asyncpg://", "postgresql://")) as dsn:
            asyncio.run(run(sa_url(dsn), args))
    else:
        from app.db.migrate import upgrade_sync

        with tempfile.TemporaryDirectory(prefix="bench-check-metrics-") as tmp:
            url = f"sqlite+aiosqlite:///{tmp}/guard.db"
            upgrade_sync(url)
            asyncio.run(run(url, args))
    print(f"load: {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()
