"""Benchmark: N HTTP components at one interval in ONE real `pipeline-guard serve` process (every
loop running: scheduler, writer, leases, alerts, outbox, healing, rules, rollups, retention...),
probing real loopback HTTP targets served by another process on several 127.0.0.x addresses.
Baseline in the same run: Prometheus blackbox_exporter probing the same targets at the same rate.

    .venv/bin/python bench/probes.py                                   # 2000 @ 2 s, 5 rounds of 4 s
    .venv/bin/python bench/probes.py -n 20000 --interval 10 --rounds 6  # the target: 20k @ 10 s
    .venv/bin/python bench/probes.py -n 20000 --interval 10 --postgres postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/probes.py -n 20000 --also-n 10000 ...        # the same bench at 10k too
    .venv/bin/python bench/probes.py --app-dir /tmp/base ...            # another commit's tree (before/after)

The components are written straight into a scratch database (a SQLite file in a temp dir, or a Postgres
database made beside --postgres) with their states healthy, as a running fleet's are after a restart
(`--cold`: unknown, a first deployment, where every first result is a transition whose events the alert and
healing subscribers handle one by one); the guard is started on it, and measured after it has loaded every
component and run one interval. Then `--rounds` windows of `--round-s` seconds (default: one interval), each
giving, from outside the process:

- stored/s (rows added to check_results) vs expected (N / interval) and vs probes run,
- schedule lag p50/p99 (the guard's last 20,000 start-minus-due times, /api/v1/status/detailed),
- RSS of the serve process, its CPU ms per probe (the guard writes SQLite in-process; the Postgres
  server's own CPU is not counted),
- lock failures: lines of its log that mention a locked database (any loop).

Median and spread (min-max) over rounds are printed. At the end the guard gets SIGTERM (it drains its
buffer) and "lost" = probes the guard had run minus rows stored. Scratch databases and temp dirs are
removed. blackbox_exporter is then driven at the same rate for the same rounds: probes per CPU-second
of the exporter beside the guard's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._guard_serve import GuardServe, blackbox_exporter, drive_blackbox, proc_cpu_seconds, proc_rss_mb
from bench._history import Seeded, seed_postgres, seed_sqlite

SERVER = r"""
import asyncio, sys
from aiohttp import web
async def ok(request): return web.Response(text="ok")
async def main():
    app = web.Application(); app.router.add_get("/health", ok)
    runner = web.AppRunner(app, access_log=None); await runner.setup()
    for host in sys.argv[2:]:
        await web.TCPSite(runner, host, int(sys.argv[1]), backlog=4096).start()
    print("ready", flush=True); await asyncio.Event().wait()
try:
    import uvloop; uvloop.install()
except ImportError:
    pass
asyncio.run(main())
"""
JITTER = 0.1


@contextlib.contextmanager
def scratch_database(args, tmp: str):
    """A SQLite file in ``tmp``, or a database made beside ``--postgres`` and dropped afterwards."""
    if not args.postgres:
        from app.db.migrate import upgrade_sync

        url = f"sqlite+aiosqlite:///{tmp}/guard.db"
        upgrade_sync(url)
        yield url
        return
    from bench._server import migrated_pg_database, sa_url

    with migrated_pg_database(args.postgres.replace("postgresql+asyncpg://", "postgresql://")) as dsn:
        yield sa_url(dsn)


@contextlib.asynccontextmanager
async def scratch_session(url: str):
    from app.config.settings import Settings
    from app.db.engine import create_engine, create_sessionmaker
    from app.db.session import session_scope

    engine = create_engine(Settings(database_url=url, env="test"))
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            yield session
    finally:
        await engine.dispose()


async def add_components(url: str, n: int, urls: list[str], interval: float, *, cold: bool) -> None:
    from sqlalchemy import insert, select

    from app.db.models import Component, ComponentState

    async with scratch_session(url) as session:
        rows = [
            {
                "name": f"svc-{i:05d}",
                "description": "",
                "critical": False,
                "labels": {},
                "enabled": True,
                "source": "api",
                "version": 1,
                "check": {"kind": "http", "url": urls[i % len(urls)], "interval": interval},
            }
            for i in range(n)
        ]
        for start in range(0, n, 2000):
            await session.execute(insert(Component), rows[start : start + 2000])
        await session.flush()
        ids = (await session.execute(select(Component.id))).scalars().all()
        # As the API does; a running fleet (the default) has its states persisted as healthy, as after
        # a restart; --cold starts them unknown (every first result is then a transition).
        seeded = {} if cold else {"status": "healthy", "recent_outcomes": "u"}
        await session.execute(insert(ComponentState), [{"component_id": i, **seeded} for i in ids])


async def stored_results(url: str) -> int:
    """Rows in check_results (max id: ids only grow, and nothing is deleted during a run)."""
    from sqlalchemy import func, select

    from app.db.models import CheckResultRecord

    async with scratch_session(url) as session:
        return (await session.execute(select(func.coalesce(func.max(CheckResultRecord.id), 0)))).scalar_one()


def run_guard(args, n: int, urls: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="guard-bench-") as tmp, scratch_database(args, tmp) as url:
        return asyncio.run(bench_guard(args, n, urls, Path(tmp), url))


async def seed_history(args, url: str) -> Seeded | None:
    """`--history-hours` of stored history (see bench/_history.py for what is seeded and why)."""
    if not args.history_hours:
        return None
    if url.startswith("sqlite"):
        seeded = seed_sqlite(url.split("///", 1)[1], args.interval, args.history_hours, args.raw_hours)
    else:
        dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
        seeded = await seed_postgres(dsn, args.interval, args.history_hours, args.raw_hours)
    print(
        f"[history seeded in {seeded.seconds:.0f} s: {seeded.raw_results:,} raw results (last "
        f"{args.raw_hours:g} h), {seeded.rollups:,} hourly rollups (the {args.history_hours:g} h before)]",
        file=sys.stderr,
    )
    return seeded


async def bench_guard(args, n: int, urls: list[str], tmp: Path, url: str) -> dict:
    await add_components(url, n, urls, args.interval, cold=args.cold)
    seeded = await seed_history(args, url)
    base_id = seeded.max_result_id if seeded else 0
    guard = GuardServe(
        url,
        tmp,
        interval=args.interval,
        workers=args.workers,
        jitter=JITTER,
        app_dir=Path(args.app_dir).resolve(),
    )
    guard.start()
    rounds: list[dict] = []
    ran = 0
    peak_rss = start_rss = 0.0
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            await guard.wait_ready(client)
            deadline, started = time.monotonic() + 600, time.monotonic()
            while (scheduled := (await guard.scheduler_stats(client))["components_scheduled"]) < n:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the guard loaded {scheduled} of {n} components in 600 s; its log ends: "
                        f"{guard.log_path.read_text()[-1500:]}"
                    )
                await asyncio.sleep(1.0)
            print(f"[{n} components loaded in {time.monotonic() - started:.0f} s]", file=sys.stderr)
            start_rss = guard.rss_mb()
            await asyncio.sleep(
                args.interval + 1
            )  # the first interval (every component starts) is not measured
            before = (
                time.monotonic(),
                guard.cpu_seconds(),
                await stored_results(url) - base_id,
                (await guard.scheduler_stats(client))["checks_run"],
                guard.lock_failures()[0],
            )
            for _ in range(args.rounds):
                await asyncio.sleep(args.round_s)
                stats = await guard.scheduler_stats(client)
                after = (
                    time.monotonic(),
                    guard.cpu_seconds(),
                    await stored_results(url) - base_id,
                    stats["checks_run"],
                    guard.lock_failures()[0],
                )
                elapsed, cpu, stored, run, locks = (a - b for a, b in zip(after, before, strict=True))
                rounds.append(
                    {
                        "stored_per_s": stored / elapsed,
                        "run_per_s": run / elapsed,
                        "lag_p50": stats["scheduler_lag_p50_seconds"] or 0.0,
                        "lag_p99": stats["scheduler_lag_p99_seconds"] or 0.0,
                        "rss_mb": guard.rss_mb(),
                        "cpu_ms_per_probe": 1000 * cpu / max(run, 1),
                        "probes_per_cpu_s": run / max(cpu, 1e-9),
                        "cpu_pct": 100 * cpu / elapsed,
                        "lock_failures": locks,
                        "buffered": stats["buffered_results"],
                        "dropped": stats["dropped_results"],
                    }
                )
                before = after
            ran = (await guard.scheduler_stats(client))["checks_run"]
            peak_rss = proc_rss_mb(guard.proc.pid, "VmHWM")
    finally:
        stop_started = time.monotonic()
        code = guard.stop()
        stop_s = time.monotonic() - stop_started
        if args.keep_log:
            shutil.copy(guard.log_path, args.keep_log)
    locks, first_lock = guard.lock_failures()
    total = await stored_results(url) - base_id
    final = guard.shutdown_figures()  # the guard's own count of checks run, up to its last one
    ran_total = final["checks_run"] if final else ran
    return {
        "rounds": rounds,
        "lost": ran_total - total,
        "ran": ran_total,
        "ran_counted_by": "the guard at shutdown" if final else "the last status poll before SIGTERM",
        "shutdown": final,
        "stop_s": stop_s,
        "start_rss_mb": start_rss,
        "end_rss_mb": rounds[-1]["rss_mb"] if rounds else 0.0,
        "stored": total,
        "exit": code,
        "lock_failures": locks,
        "first_lock": first_lock,
        "peak_rss_mb": peak_rss,
        "api_errors": guard.api_errors,
    }


def run_blackbox(args, urls: list[str]) -> list[dict]:
    rate = args.n / args.interval
    rounds = []
    with blackbox_exporter() as (proc, probe_url):
        time.sleep(0.5)
        for _ in range(args.rounds):
            cpu0, t0 = proc_cpu_seconds(proc.pid), time.monotonic()
            done = asyncio.run(
                drive_blackbox(probe_url, urls, rate=rate, duration=args.round_s, concurrency=args.workers)
            )
            cpu, elapsed = proc_cpu_seconds(proc.pid) - cpu0, time.monotonic() - t0
            rounds.append(
                {
                    "run_per_s": done / elapsed,
                    "probes_per_cpu_s": done / max(cpu, 1e-9),
                    "cpu_ms_per_probe": 1000 * cpu / max(done, 1),
                }
            )
    return rounds


def spread(rounds: list[dict], key: str, fmt: str = ".0f", scale: float = 1.0) -> str:
    values = sorted(r[key] * scale for r in rounds)
    return f"{statistics.median(values):{fmt}} ({values[0]:{fmt}}-{values[-1]:{fmt}})"


def report(n: int, args, guard: dict) -> None:
    rounds, expected = guard["rounds"], n / args.interval
    print(
        f"guard serve, {n} components @ {args.interval:g}s (expected {expected:.0f} results/s), "
        f"{len(rounds)} rounds of {args.round_s:g}s, median (min-max):"
    )
    print(
        f"  stored/s {spread(rounds, 'stored_per_s')}  run/s {spread(rounds, 'run_per_s')}"
        f"  stored/expected {statistics.median(r['stored_per_s'] for r in rounds) / expected:.2f}"
    )
    print(
        f"  lag p50 {spread(rounds, 'lag_p50', '.1f', 1000)} ms  p99 "
        f"{spread(rounds, 'lag_p99', '.1f', 1000)} ms"
    )
    print(
        f"  rss {spread(rounds, 'rss_mb')} MB (peak {guard['peak_rss_mb']:.0f} MB)"
        f"  cpu/probe {spread(rounds, 'cpu_ms_per_probe', '.3f')} ms  cpu {spread(rounds, 'cpu_pct')}%"
        f"  probes per CPU-second {spread(rounds, 'probes_per_cpu_s')}"
    )
    print(
        f"  buffered at round ends {spread(rounds, 'buffered')}  dropped "
        f"{rounds[-1]['dropped'] if rounds else 0}"
        f"  lock failures (whole run, any loop) {guard['lock_failures']} {guard['first_lock'] or ''}"
    )
    print(
        f"  rss after loading {guard['start_rss_mb']:.0f} MB, at the last round {guard['end_rss_mb']:.0f} MB"
    )
    final = guard["shutdown"] or {}
    print(
        f"  SIGTERM -> exit {guard['stop_s']:.1f} s (exit {guard['exit']}): stored {guard['stored']} of "
        f"{guard['ran']} run (counted by {guard['ran_counted_by']}): lost {guard['lost']}"
        f" (the guard: dropped {final.get('dropped', '?')}, not written {final.get('not_written', '?')})"
        f"  status polls answered 5xx or not within 30 s {guard['api_errors']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=2000, help="components (default 2000)")
    parser.add_argument(
        "--also-n",
        type=int,
        action="append",
        default=[],
        help="also run the guard with this many components (a same-run baseline)",
    )
    parser.add_argument("--interval", type=float, default=2.0, help="check interval in seconds (default 2)")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (default 5)")
    parser.add_argument("--round-s", type=float, help="seconds per round (default: two intervals)")
    parser.add_argument("--workers", type=int, default=100, help="max_workers (default 100)")
    parser.add_argument("--hosts", type=int, default=4, help="127.0.0.x addresses served (default 4)")
    parser.add_argument("--port", type=int, default=18765)
    parser.add_argument(
        "--postgres", help="postgresql://.../db: a scratch database is made beside it (and dropped)"
    )
    parser.add_argument(
        "--app-dir",
        default=str(Path(__file__).resolve().parents[1]),
        help="tree the guard is served from (default this one)",
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="components start unknown (a first deployment), not healthy (a running fleet)",
    )
    parser.add_argument(
        "--history-hours",
        type=float,
        default=0.0,
        help="stored history seeded before the guard starts (24: what a day at the shipped retention "
        "leaves; see bench/_history.py)",
    )
    parser.add_argument(
        "--raw-hours", type=float, default=1.5, help="of the history, the last hours as raw results (1.5)"
    )
    parser.add_argument("--keep-log", help="copy the guard's log here at the end")
    parser.add_argument("--no-blackbox", action="store_true", help="skip the blackbox_exporter baseline")
    args = parser.parse_args()
    args.round_s = args.round_s or 2 * args.interval
    hosts = [f"127.0.0.{k}" for k in range(1, args.hosts + 1)]
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(args.port), *hosts], stdout=subprocess.PIPE)
    results: list[tuple[int, dict]] = []
    blackbox: list[dict] = []
    try:
        assert server.stdout.readline().strip() == b"ready"
        urls = [f"http://{h}:{args.port}/health" for h in hosts]
        for n in [args.n, *args.also_n]:
            results.append((n, run_guard(args, n, urls)))
            report(n, args, results[-1][1])
            print(f"load: {Path('/proc/loadavg').read_text().split()[:3]}", flush=True)
        if not args.no_blackbox:
            blackbox = run_blackbox(args, urls)
    finally:
        server.terminate()
        server.wait(5)
    print(
        f"db={'postgres' if args.postgres else 'sqlite'} workers={args.workers} hosts={args.hosts}"
        f" app={args.app_dir}"
    )
    if blackbox:
        print(
            f"blackbox_exporter at {args.n / args.interval:.0f} probes/s asked: run/s "
            f"{spread(blackbox, 'run_per_s')}"
            f"  cpu/probe {spread(blackbox, 'cpu_ms_per_probe', '.3f')} ms"
            f"  probes per CPU-second {spread(blackbox, 'probes_per_cpu_s')}"
        )
        guard_rounds = results[0][1]["rounds"]
        ratio = statistics.median(r["probes_per_cpu_s"] for r in guard_rounds) / statistics.median(
            r["probes_per_cpu_s"] for r in blackbox
        )
        print(f"  guard/blackbox probes per CPU-second (medians): {ratio:.2f}")
    print(f"load: {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()
