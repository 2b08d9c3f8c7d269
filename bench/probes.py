"""Benchmark: N HTTP components probed by the real scheduler with results stored, against targets
served by a separate process on several 127.0.0.x addresses; then, in the same run, a bare aiohttp
loop over the same targets with the same concurrency. Prints probes/s, p50/p99 schedule lag,
CPU per probe, RSS, and the ratios.

    .venv/bin/python bench/probes.py                      # 2000 components @ 2 s for 20 s (< 2 min)
    .venv/bin/python bench/probes.py -n 10000 --interval 10 --duration 60   # the issue's target
    .venv/bin/python bench/probes.py --postgres postgresql+asyncpg://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SERVER = r"""
import asyncio, sys
from aiohttp import web
async def ok(request): return web.Response(text="ok")
async def main():
    app = web.Application(); app.router.add_get("/health", ok)
    runner = web.AppRunner(app, access_log=None); await runner.setup()
    for host in sys.argv[2:]:
        await web.TCPSite(runner, host, int(sys.argv[1]), backlog=2048).start()
    print("ready", flush=True); await asyncio.Event().wait()
asyncio.run(main())
"""


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


async def bench_guard(args, urls: list[str]) -> dict:
    from sqlalchemy import insert

    from app.db.migrate import upgrade_sync
    from app.db.models import Component, ComponentState
    from app.db.session import session_scope
    from app.monitoring.wiring import install
    from tests.conftest import make_settings, running_guard

    tmp = Path(tempfile.mkdtemp(prefix="guard-bench-"))
    if args.postgres:
        url = args.postgres
        import asyncpg
        base, _, name = url.rpartition("/")
        conn = await asyncpg.connect(base.replace("postgresql+asyncpg", "postgresql") + "/postgres")
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()
    else:
        url = f"sqlite+aiosqlite:///{tmp / 'guard.db'}"
    await asyncio.to_thread(upgrade_sync, url)
    settings = make_settings(url, tmp, max_workers=args.workers,
                             pipeline={"monitoring": {"interval": args.interval, "health_check_timeout": 5}})
    async with running_guard(settings, build_services=lambda state: [install(state)] and []) as guard:
        async with session_scope(guard.state.sessionmaker) as session:
            rows = [{"name": f"svc-{i:05d}", "description": "", "critical": False, "labels": {}, "enabled": True,
                     "source": "api", "version": 1,
                     "check": {"kind": "http", "url": urls[i % len(urls)], "interval": args.interval}}
                    for i in range(args.n)]
            for start in range(0, len(rows), 2000):
                await session.execute(insert(Component), rows[start:start + 2000])
            await session.flush()
            from sqlalchemy import select
            ids = (await session.execute(select(Component.id))).scalars().all()
            await session.execute(insert(ComponentState), [{"component_id": i} for i in ids])
        scheduler = guard.state.extras["scheduler"]
        await scheduler.open()
        scheduler.start_background()
        warmup = min(args.interval, args.duration / 4)
        await asyncio.sleep(warmup)
        runs0, cpu0, t0 = scheduler.checks_run, cpu_seconds(), time.monotonic()
        scheduler.lags.clear()
        await asyncio.sleep(args.duration)
        runs, cpu, elapsed = scheduler.checks_run - runs0, cpu_seconds() - cpu0, time.monotonic() - t0
        lags = list(scheduler.lags)
        await scheduler.close()
        stats = scheduler.stats()
        total = scheduler.checks_run
        from sqlalchemy import func, select as sel
        from app.db.models import CheckResultRecord
        async with session_scope(guard.state.sessionmaker) as session:
            stored = (await session.execute(sel(func.count()).select_from(CheckResultRecord))).scalar_one()
    return {"probes_per_s": runs / elapsed, "cpu_per_probe_ms": 1000 * cpu / max(runs, 1), "lag_p50": pct(lags, 0.5),
            "lag_p99": pct(lags, 0.99), "rss_mb": rss_mb(), "stored": stored, "overruns": stats["overruns"],
            "dropped": stats["dropped_results"], "total": total, "flush_failures": stats["flush_failures"], "buffered": stats["buffered_results"], "error": scheduler.last_flush_error}


async def bench_bare(args, urls: list[str]) -> dict:
    from app.core.outbound import make_session

    session = make_session(limit=args.workers, limit_per_host=max(8, args.workers // 2))
    count = 0
    stop = time.monotonic() + args.bare_duration
    cpu0, t0 = cpu_seconds(), time.monotonic()

    async def worker(offset: int):
        nonlocal count
        i = offset
        while time.monotonic() < stop:
            async with session.get(urls[i % len(urls)], timeout=__import__("aiohttp").ClientTimeout(total=5)) as r:
                await r.read()
            count += 1
            i += args.workers

    await asyncio.gather(*(worker(k) for k in range(args.workers)))
    elapsed, cpu = time.monotonic() - t0, cpu_seconds() - cpu0
    await session.close()
    return {"probes_per_s": count / elapsed, "cpu_per_probe_ms": 1000 * cpu / max(count, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=2000, help="components (default 2000)")
    parser.add_argument("--interval", type=float, default=2.0, help="check interval in seconds (default 2)")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds (default 20)")
    parser.add_argument("--bare-duration", type=float, default=8.0)
    parser.add_argument("--workers", type=int, default=100, help="max_workers (default 100)")
    parser.add_argument("--hosts", type=int, default=4, help="127.0.0.x addresses served (default 4)")
    parser.add_argument("--port", type=int, default=18765)
    parser.add_argument("--postgres", help="postgresql+asyncpg://.../dbname (recreated) instead of a SQLite file")
    args = parser.parse_args()
    hosts = [f"127.0.0.{k}" for k in range(1, args.hosts + 1)]
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(args.port), *hosts], stdout=subprocess.PIPE)
    try:
        assert server.stdout.readline().strip() == b"ready"
        urls = [f"http://{h}:{args.port}/health" for h in hosts]
        try:
            import uvloop
            uvloop.install()
        except ImportError:
            pass
        guard = asyncio.run(bench_guard(args, urls))
        bare = asyncio.run(bench_bare(args, urls))
    finally:
        server.terminate()
        server.wait(5)
    demanded = args.n / args.interval
    print(f"components={args.n} interval={args.interval:g}s workers={args.workers} hosts={args.hosts} "
          f"db={'postgres' if args.postgres else 'sqlite'} measured={args.duration:g}s")
    print(f"guard : {guard['probes_per_s']:8.0f} probes/s (demand {demanded:.0f}/s)  lag p50 {guard['lag_p50'] * 1000:.1f} ms"
          f"  p99 {guard['lag_p99'] * 1000:.1f} ms  cpu/probe {guard['cpu_per_probe_ms']:.3f} ms  rss {guard['rss_mb']:.0f} MB"
          f"  stored {guard['stored']} of {guard['total']} run (lost {guard['total'] - guard['stored']})  overruns {guard['overruns']}  dropped {guard['dropped']}  flush failures {guard['flush_failures']} {guard['error'] or ''}")
    print(f"bare  : {bare['probes_per_s']:8.0f} probes/s (saturated)  cpu/probe {bare['cpu_per_probe_ms']:.3f} ms")
    print(f"ratio : achieved/demand {guard['probes_per_s'] / demanded:.2f}   guard/bare throughput "
          f"{guard['probes_per_s'] / bare['probes_per_s']:.2f}   bare/guard cpu-per-probe "
          f"{bare['cpu_per_probe_ms'] / guard['cpu_per_probe_ms']:.2f}")


if __name__ == "__main__":
    main()
