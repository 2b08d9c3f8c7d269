"""The per-probe metric points (an http check's `status_code`): CPU to store one second of them at
20,000 components @ 10 s (2,000 points) on the check path (`CheckMetrics.add` + `flush`) beside the
generic ingest path (`MetricsService.record` on the same points as dicts, what the check path did
before), in paired rounds (generic, check, generic...) in the same process and database.

    .venv/bin/python bench/check_metrics.py [--points 2000] [--rounds 9] [--postgres postgresql://...]

Each side stores the same number of points (distinct components, one point each, now); CPU is the
process' (event loop + the SQLite driver's thread; on Postgres the server's own CPU is not counted)
and wall time per flush. Median and spread (min-max) over rounds; the ratio of medians; the load.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
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
    from app.checks.base import CheckResult
    from app.db.session import session_scope
    from app.metrics.service import MetricsService
    from tests.conftest import make_settings, running_guard

    settings = make_settings(url, Path(tempfile.mkdtemp(prefix="bench-check-metrics-")))
    async with running_guard(settings, build_services=lambda _rt: []) as guard:
        rt = guard.runtime
        check_metrics = rt.monitoring.scheduler.check_metrics
        names = await add_components(rt.sessionmaker, args.components)
        offset = 0

        def results() -> list[tuple[str, CheckResult]]:
            nonlocal offset
            chosen = [names[(offset + i) % len(names)] for i in range(args.points)]
            offset += args.points
            return [
                (name, CheckResult.up("HTTP 200 in 1 ms", 0.001, metrics={"status_code": 200.0}))
                for name in chosen
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

        sides = {"generic": generic, "check path": check_path}
        figures: dict[str, list[tuple[float, float]]] = {side: [] for side in sides}
        for fn in sides.values():  # warm-up: caches, prepared statements, the series rows
            await fn(results())
        for _ in range(args.rounds):
            for side, fn in sides.items():
                checked = results()  # the probes' results are made outside the timed part
                cpu0, wall0 = time.process_time(), time.perf_counter()
                await fn(checked)
                figures[side].append((time.process_time() - cpu0, time.perf_counter() - wall0))
        print(
            f"{args.points} check metric points per flush (one per component, {args.components} components), "
            f"{args.rounds} paired rounds, db={'postgres' if args.postgres else 'sqlite'}, median (min-max):"
        )
        medians = {}
        for side, rows in figures.items():
            cpu = sorted(1000 * c for c, _ in rows)
            wall = sorted(1000 * w for _, w in rows)
            medians[side] = statistics.median(cpu)
            print(
                f"  {side:10s} CPU {statistics.median(cpu):6.1f} ms ({cpu[0]:.1f}-{cpu[-1]:.1f})"
                f"  wall {statistics.median(wall):6.1f} ms ({wall[0]:.1f}-{wall[-1]:.1f})"
                f"  = {1e6 * statistics.median(cpu) / 1000 / args.points:.1f} us CPU per point"
            )
        print(f"  check path / generic CPU (medians): {medians['check path'] / medians['generic']:.2f}")
        print(f"  points stored: {check_metrics.written} on the check path; {datetime.now(UTC):%H:%M:%S} UTC")


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
