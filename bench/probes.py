"""Benchmark: N HTTP components probed by the real scheduler with results stored, against targets
served by a separate process on several 127.0.0.x addresses, compared in the same run with a bare
aiohttp loop over the same targets with the same concurrency (same connector limits, same number
of concurrent workers).

    .venv/bin/python bench/probes.py                      # 2000 components @ 2 s for 20 s (< 2 min)
    .venv/bin/python bench/probes.py -n 10000 --interval 10 --duration 60   # the issue's target
    .venv/bin/python bench/probes.py --postgres postgresql://postgres@127.0.0.1:5432/test   # scratch db beside it

Four phases, each in its own event loop, in this order:

1. guard, scheduled: the guard with its full service set, as `pipeline-guard serve` runs it (leases,
   the Scheduler's dispatcher, workers and flusher, alerts, outbox, healing, rules, compaction,
   retention; SQLite/Postgres writes) with N components at `--interval`, measured for `--duration`
   after a warm-up. Every other loop's log line about a locked database is counted.
2. bare, scheduled: a minimal loop with the SAME schedule - the same N targets, each due every
   `--interval` with the same jitter, a heap dispatcher feeding the same number of workers,
   `session.get()` + `read()`, nothing stored - measured for the same duration.
3. guard, saturated: the real Scheduler again with an interval so short (`--sat-interval`,
   default 0.05 s: demand N/0.05 probes/s) that demand far exceeds capacity: every worker is busy
   all the time, so probes/s is the guard's ceiling (results still stored).
4. bare, saturated: the bare loop flat out (each worker probes its next target as soon as the
   previous one is done), for `--sat-duration`.

Figures printed:

- "scheduled": achieved probes/s vs the demand N/interval, schedule lag p50/p99 (start time minus
  due time), CPU per probe (user+sys CPU of this process / probes; the guard's includes its
  database writes, done in this process, the target server runs in another process), RSS of the
  guard after phase 1, stored vs run (rows in check_results vs probes the guard completed;
  "lost" must be 0).
- "cpu/probe guard/bare" (scheduled): how much more CPU the guard spends per probe than a bare
  loop doing the same work at the same rate - the overhead of scheduling, state machine, metrics
  and storage.
- "saturation": max probes/s of guard and bare at the same concurrency, and the ratio guard/bare -
  this is the issue's "ratio >= 0.7" figure. With `--rounds K` the saturation phases alternate K
  times; the median round of each and the median and spread of the paired ratios are printed.
- "server cpu": CPU use of the target server process during the phase (100% = one core). When it
  is near 100% the server, not the prober, is the limit and the saturation ratio says little.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import logging
import os
import random
import resource
import statistics
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
try:
    import uvloop; uvloop.install()
except ImportError:
    pass
asyncio.run(main())
"""
JITTER = 0.1  # pipeline.monitoring.jitter default, used by both the guard and the bare loop
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


class Meter:
    """CPU of this process and of the target server over one measured window."""

    def __init__(self, server_pid: int):
        self.server_pid = server_pid

    def start(self) -> None:
        self.cpu0, self.srv0, self.t0 = cpu_seconds(), proc_cpu_seconds(self.server_pid), time.monotonic()

    def stop(self, probes: int) -> dict:
        elapsed = time.monotonic() - self.t0
        cpu, srv = cpu_seconds() - self.cpu0, proc_cpu_seconds(self.server_pid) - self.srv0
        return {"probes": probes, "elapsed": elapsed, "probes_per_s": probes / elapsed,
                "cpu_per_probe_ms": 1000 * cpu / max(probes, 1), "cpu_pct": 100 * cpu / elapsed,
                "server_cpu_pct": 100 * srv / elapsed}


class LockFailures(logging.Handler):
    """Counts log records of any loop that mention a locked database (SQLite's "database is locked")."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.first: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage() + (logging.Formatter().formatException(record.exc_info) if record.exc_info else "")
        if "locked" in text:
            self.count += 1
            self.first = self.first or f"{record.name}: {record.getMessage()[:160]}"


def run_guard(args, urls: list[str], meter: Meter, *, interval: float, duration: float) -> dict:
    """One guard phase on a scratch database (a temp dir, or a Postgres database), both removed after."""
    with tempfile.TemporaryDirectory(prefix="guard-bench-") as tmp, scratch_database(args, tmp) as url:
        return asyncio.run(bench_guard(args, urls, meter, Path(tmp), url, interval=interval, duration=duration))


async def bench_guard(args, urls: list[str], meter: Meter, tmp: Path, url: str, *, interval: float,
                      duration: float) -> dict:
    """The guard with its full service set (what `pipeline-guard serve` runs: leases, scheduler and
    writer, alerts, outbox, healing, rule evaluation, compaction, retention...) in this process."""
    from sqlalchemy import func, insert, select

    from app.platform.compose import default_services
    from app.db.migrate import upgrade_sync
    from app.db.models import CheckResultRecord, Component, ComponentState
    from tests.conftest import make_settings, running_guard

    await asyncio.to_thread(upgrade_sync, url)
    settings = make_settings(url, tmp, max_workers=args.workers,
                             pipeline={"monitoring": {"interval": interval, "health_check_timeout": 5,
                                                      "jitter": JITTER}})
    async with scratch_session(url) as session:
        rows = [{"name": f"svc-{i:05d}", "description": "", "critical": False, "labels": {}, "enabled": True,
                 "source": "api", "version": 1,
                 "check": {"kind": "http", "url": urls[i % len(urls)], "interval": interval}}
                for i in range(args.n)]
        for start in range(0, len(rows), 2000):
            await session.execute(insert(Component), rows[start:start + 2000])
        await session.flush()
        ids = (await session.execute(select(Component.id))).scalars().all()
        await session.execute(insert(ComponentState), [{"component_id": i} for i in ids])
    locks = LockFailures()
    logging.getLogger().addHandler(locks)
    try:
        async with running_guard(settings, build_services=default_services) as guard:
            scheduler = guard.runtime.monitoring.scheduler
            deadline = time.monotonic() + 120
            while len(scheduler.entries) < args.n and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            await asyncio.sleep(min(max(interval, 1.0), duration / 4, args.warmup))
            runs0 = scheduler.checks_run
            scheduler.lags.clear()
            locks.count, locks.first = 0, None
            meter.start()
            await asyncio.sleep(duration)
            figures = meter.stop(scheduler.checks_run - runs0)
            lags = list(scheduler.lags)
            rss = rss_mb()
            buffered = scheduler.writer.buffered
        # The lifespan stopped the scheduler: its buffer is drained.
        stats = scheduler.stats()
        async with scratch_session(url) as session:
            stored = (await session.execute(select(func.count()).select_from(CheckResultRecord))).scalar_one()
    finally:
        logging.getLogger().removeHandler(locks)
    return {**figures, "lag_p50": pct(lags, 0.5), "lag_p99": pct(lags, 0.99), "rss_mb": rss, "stored": stored,
            "total": scheduler.checks_run, "overruns": stats["overruns"], "dropped": stats["dropped_results"],
            "flush_failures": stats["flush_failures"], "error": scheduler.last_flush_error,
            "lock_failures": locks.count, "first_lock_failure": locks.first, "buffered_at_end": buffered}


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


@contextlib.contextmanager
def scratch_database(args, tmp: str):
    """A SQLite file in ``tmp``, or a database made beside ``--postgres`` and dropped afterwards."""
    if not args.postgres:
        yield f"sqlite+aiosqlite:///{tmp}/guard.db"
        return
    from bench._server import migrated_pg_database, sa_url

    with migrated_pg_database(args.postgres.replace("postgresql+asyncpg://", "postgresql://")) as dsn:
        yield sa_url(dsn)


def _bare_session(args):
    from app.outbound.http import make_session

    # The guard's session: same connector limits.
    return make_session(limit=args.workers, limit_per_host=max(8, args.workers // 2))


async def bench_bare_scheduled(args, urls: list[str], meter: Meter, *, interval: float, duration: float) -> dict:
    """The guard's schedule without the guard: N targets, each due every `interval` (+ jitter,
    start-to-start), a heap dispatcher that never queues more than there are free workers."""
    import aiohttp

    session = _bare_session(args)
    timeout = aiohttp.ClientTimeout(total=5)
    targets = [urls[i % len(urls)] for i in range(args.n)]
    now = time.monotonic()
    heap = []
    for i in range(args.n):
        base = now + random.uniform(0, interval)
        heap.append((base + random.uniform(0, JITTER * interval), i, base))
    heapq.heapify(heap)
    queue: asyncio.Queue = asyncio.Queue()
    free = asyncio.Event()
    busy = 0
    count = 0
    lags: list[float] = []

    async def worker():
        nonlocal busy, count
        while True:
            i, due = await queue.get()
            busy += 1
            started = time.monotonic()
            lags.append(max(0.0, started - due))
            try:
                async with session.get(targets[i], timeout=timeout) as resp:
                    await resp.read()
            except Exception:  # noqa: BLE001, S110 - a failed probe is counted like any finished probe
                pass
            count += 1
            busy -= 1
            free.set()

    async def dispatcher():
        while True:
            now = time.monotonic()
            while heap and heap[0][0] <= now:
                if busy + queue.qsize() >= args.workers:
                    free.clear()
                    await free.wait()
                    now = time.monotonic()
                    continue
                due, i, base = heapq.heappop(heap)
                queue.put_nowait((i, due))
                base += interval
                if base < now - interval:
                    base = now
                heapq.heappush(heap, (base + random.uniform(0, JITTER * interval), i, base))
            await asyncio.sleep(max(0.0, min(heap[0][0] - time.monotonic(), 1.0)) if heap else 1.0)

    tasks = [asyncio.create_task(worker()) for _ in range(args.workers)] + [asyncio.create_task(dispatcher())]
    await asyncio.sleep(min(max(interval, 1.0), duration / 4, args.warmup))
    count0 = count
    lags.clear()
    meter.start()
    await asyncio.sleep(duration)
    figures = meter.stop(count - count0)
    measured_lags = list(lags)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await session.close()
    return {**figures, "lag_p50": pct(measured_lags, 0.5), "lag_p99": pct(measured_lags, 0.99)}


async def bench_bare_saturated(args, urls: list[str], meter: Meter, *, duration: float) -> dict:
    """Flat out: each of `workers` workers probes its next target as soon as the previous is done."""
    import aiohttp

    session = _bare_session(args)
    timeout = aiohttp.ClientTimeout(total=5)
    targets = [urls[i % len(urls)] for i in range(args.n)]
    count = 0
    measuring = False
    stop = time.monotonic() + 1.0 + duration  # 1 s warm-up (connections opened)

    async def worker(offset: int):
        nonlocal count
        i = offset
        while time.monotonic() < stop:
            try:
                async with session.get(targets[i % len(targets)], timeout=timeout) as resp:
                    await resp.read()
            except Exception:  # noqa: BLE001, S110 - the bare loop counts failures as finished too
                pass
            if measuring:
                count += 1
            i += args.workers

    tasks = [asyncio.create_task(worker(k)) for k in range(args.workers)]
    await asyncio.sleep(1.0)
    measuring = True
    meter.start()
    await asyncio.sleep(stop - time.monotonic())
    figures = meter.stop(count)
    await asyncio.gather(*tasks, return_exceptions=True)
    await session.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=2000, help="components (default 2000)")
    parser.add_argument("--interval", type=float, default=2.0, help="check interval in seconds (default 2)")
    parser.add_argument("--duration", type=float, default=20.0,
                        help="measured seconds of each scheduled phase (default 20)")
    parser.add_argument("--warmup", type=float, default=float("inf"),
                        help="seconds before measuring (default: one interval, at most a quarter of the duration, "
                             "at least 1 s; the first interval, when every component starts, is not measured)")
    parser.add_argument("--sat-interval", type=float, default=0.05,
                        help="interval of the saturated guard phase (default 0.05 s: demand N/0.05 per second)")
    parser.add_argument("--sat-duration", type=float, default=8.0,
                        help="measured seconds of each saturated phase (default 8)")
    parser.add_argument("--rounds", type=int, default=1, help="alternating saturation rounds, median of each (default 1)")
    parser.add_argument("--phases", default="guard,bare,guard-sat,bare-sat",
                        help="phases to run (default all: guard,bare,guard-sat,bare-sat), e.g. for profiling one")
    parser.add_argument("--workers", type=int, default=100, help="max_workers (default 100)")
    parser.add_argument("--hosts", type=int, default=4, help="127.0.0.x addresses served (default 4)")
    parser.add_argument("--port", type=int, default=18765)
    parser.add_argument("--postgres", help="postgresql://.../db: a scratch database is made beside it (and dropped)")
    args = parser.parse_args()
    hosts = [f"127.0.0.{k}" for k in range(1, args.hosts + 1)]
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(args.port), *hosts], stdout=subprocess.PIPE)
    meter = Meter(server.pid)
    try:
        assert server.stdout.readline().strip() == b"ready"
        urls = [f"http://{h}:{args.port}/health" for h in hosts]
        try:
            import uvloop
            uvloop.install()
        except ImportError:
            pass
        phases = set(args.phases.split(","))
        guard = bare = None
        if "guard" in phases:
            guard = run_guard(args, urls, meter, interval=args.interval, duration=args.duration)
        if "bare" in phases:
            bare = asyncio.run(bench_bare_scheduled(args, urls, meter, interval=args.interval, duration=args.duration))
        sat_guard: list[dict] = []
        sat_bare: list[dict] = []
        for _ in range(args.rounds):
            if "guard-sat" in phases:
                sat_guard.append(run_guard(args, urls, meter, interval=args.sat_interval,
                                           duration=args.sat_duration))
            if "bare-sat" in phases:
                sat_bare.append(asyncio.run(bench_bare_saturated(args, urls, meter, duration=args.sat_duration)))
    finally:
        server.terminate()
        server.wait(5)

    demanded = args.n / args.interval
    print(f"components={args.n} interval={args.interval:g}s workers={args.workers} hosts={args.hosts} "
          f"db={'postgres' if args.postgres else 'sqlite'} measured={args.duration:g}s "
          f"(saturation: interval {args.sat_interval:g}s, {args.sat_duration:g}s x {args.rounds})")
    if guard:
        print(f"scheduled @ demand {demanded:.0f}/s ({args.n} x every {args.interval:g}s):")
        print(f"  guard : {guard['probes_per_s']:7.0f} probes/s  lag p50 {guard['lag_p50'] * 1000:6.1f} ms"
              f"  p99 {guard['lag_p99'] * 1000:7.1f} ms  cpu/probe {guard['cpu_per_probe_ms']:.3f} ms"
              f"  cpu {guard['cpu_pct']:3.0f}%  server cpu {guard['server_cpu_pct']:3.0f}%  rss {guard['rss_mb']:.0f} MB")
        print(f"          stored {guard['stored']} of {guard['total']} run (lost {guard['total'] - guard['stored']})"
              f"  overruns {guard['overruns']}  dropped {guard['dropped']}  flush failures {guard['flush_failures']}"
              f"  buffered at the end {guard['buffered_at_end']}  lock failures (any loop) {guard['lock_failures']}"
              f" {guard['error'] or ''} {guard['first_lock_failure'] or ''}")
    if bare:
        print(f"  bare  : {bare['probes_per_s']:7.0f} probes/s  lag p50 {bare['lag_p50'] * 1000:6.1f} ms"
              f"  p99 {bare['lag_p99'] * 1000:7.1f} ms  cpu/probe {bare['cpu_per_probe_ms']:.3f} ms"
              f"  cpu {bare['cpu_pct']:3.0f}%  server cpu {bare['server_cpu_pct']:3.0f}%")
    if guard and bare:
        print(f"  cpu/probe guard/bare {guard['cpu_per_probe_ms'] / bare['cpu_per_probe_ms']:.2f}x"
              f"   achieved/demand guard {guard['probes_per_s'] / demanded:.2f}  bare {bare['probes_per_s'] / demanded:.2f}")
    if sat_guard or sat_bare:
        print(f"saturation ({args.workers} workers, guard demand {args.n / args.sat_interval:.0f}/s):")
        for label, rounds in (("guard", sat_guard), ("bare ", sat_bare)):
            if not rounds:
                continue
            mid = sorted(rounds, key=lambda r: r["probes_per_s"])[len(rounds) // 2]  # the median round
            extra = ""
            if label == "guard":
                extra = (f"  stored {mid['stored']} of {mid['total']} run (lost {mid['total'] - mid['stored']})"
                         f"  dropped {mid['dropped']}  lock failures {mid['lock_failures']}")
            print(f"  {label} : {mid['probes_per_s']:7.0f} probes/s median  cpu/probe {mid['cpu_per_probe_ms']:.3f} ms"
                  f"  cpu {mid['cpu_pct']:3.0f}%  server cpu {mid['server_cpu_pct']:3.0f}%"
                  f"  (rounds: {', '.join(format(r['probes_per_s'], '.0f') for r in rounds)}){extra}")
    if sat_guard and sat_bare:
        ratios = sorted(g["probes_per_s"] / b["probes_per_s"] for g, b in zip(sat_guard, sat_bare, strict=False))
        cpu = sorted(b["cpu_per_probe_ms"] / g["cpu_per_probe_ms"] for g, b in zip(sat_guard, sat_bare, strict=False))
        print(f"  RATIO guard/bare probes/s, paired rounds: median {statistics.median(ratios):.2f}"
              f" ({ratios[0]:.2f}-{ratios[-1]:.2f})   (target >= 0.7)   per CPU-second guard/bare: median"
              f" {statistics.median(cpu):.2f} ({cpu[0]:.2f}-{cpu[-1]:.2f})")
    print(f"load: {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()
