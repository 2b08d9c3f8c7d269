"""Healing benchmark: reaction latency on the real path and end-to-end time to recover.

1. Reaction, probe result -> action start. The full app with every background service (the set
   `pipeline-guard serve` runs: scheduler, result writer, alerts, notifications, healing loop,
   leases...) on SQLite and on Postgres probes HTTP targets served by another process. `--victims`
   components (checked every 0.5 s, failure_threshold 2) are broken one at a time at random moments
   among `--fleet` healthy components checked every 10 s. Each victim's recovery policy is a real
   `restart` command (bash) that appends `$EPOCHREALTIME` and its incident id to a file as its first
   act. A reaction is measured from the deciding probe result (its `observed_at`, set when the probe
   completes, which is also the incident's `opened_at`) to that stamp: result buffer, urgent flush
   transaction and its event subscribers, commit, healing hand-off, decision, claim, acting
   marker, spawn. p50/p95/p99 per round, then the median and spread (min..max) over `--rounds`.
   Baseline, in the same run and the same event loop under the same load: the bare cost of spawning
   the same command (run_command -> stamp), `--baseline` times per round.
   Also shown: probe result -> decision started (the attempt's `started_at`, taken when its
   decision begins), to place the time: before it, monitoring's flush and the hand-over; after it,
   the decision, the claim's and the acting marker's commits and the spawn.
   `--attribute`: where each reaction's time went, stage by stage, beside the event loop's stalls
   and the GC's pauses (bench/_attribution.py; the slowest 5 % are listed).
2. Time to recover: the real demo (flaky worker + `pipeline-guard serve`), crash -> verified healthy,
   beside the bound period x failure_threshold + action time + 1 period.

    PIPELINE_TEST_POSTGRES_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/test \
    .venv/bin/python bench/healing.py [--rounds 3] [--incidents 50] [--fleet 1000] [--db both] [--demo-runs 0]
    .venv/bin/python bench/healing.py --app-dir /tmp/base ...   # another commit's tree (before/after)

Before/after: export the other commit (`git archive <rev> | tar -x -C /tmp/base`) and run both back
to back, alternating, under the same load; compare the medians and spreads of their rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import itertools
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MARKERS = itertools.count(10**9)  # incident ids of the baseline's stamps (far above the real ones)
RECOVERY_GRACE_S = 1.0
VERIFY_TIMEOUT_S = 3.0  # the stick window too: a victim breaks again only after it
STAMP = 'echo "$EPOCHREALTIME $PIPELINE_GUARD_INCIDENT" >> "$STAMPS"'
TARGETS = r"""
import asyncio, sys
from aiohttp import web
broken = set()
async def check(request):
    return web.Response(status=503 if request.match_info["name"] in broken else 200, text="x")
async def toggle(request):
    name = request.query["name"]
    (broken.add if request.query["ok"] == "0" else broken.discard)(name)
    return web.Response(text="set")
async def main():
    app = web.Application(); app.router.add_get("/c/{name}", check); app.router.add_get("/set", toggle)
    runner = web.AppRunner(app, access_log=None); await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(sys.argv[1]), backlog=2048).start()
    print("ready", flush=True); await asyncio.Event().wait()
asyncio.run(main())
"""


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def summary(values_ms: list[float]) -> str:
    if not values_ms:
        return "no samples"
    return (
        f"p50 {pct(values_ms, 0.5):7.1f}  p95 {pct(values_ms, 0.95):7.1f}  p99 {pct(values_ms, 0.99):7.1f}"
        f"  max {max(values_ms):7.1f} ms  (n={len(values_ms)})"
    )


class StampReader:
    """The stamps file read incrementally: the 10 waiting victims poll it every 20 ms inside the event
    loop being measured, and re-reading the whole (growing) file each time stalled that loop."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stamps: dict[int, float] = {}
        self._offset = 0

    def __call__(self) -> dict[int, float]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return self.stamps
        if size > self._offset:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read(size - self._offset)
            complete = chunk.rfind(b"\n") + 1  # a line still being written is read next time
            self._offset += complete
            for line in chunk[:complete].decode().splitlines():
                parts = line.split()
                if len(parts) == 2:
                    self.stamps.setdefault(int(parts[1]), float(parts[0].replace(",", ".")))
        return self.stamps


async def seed(url: str, base: str, victims: int, fleet: int, stamps: Path, settings) -> None:
    from sqlalchemy import insert, select

    from app.components.specs import validate_recovery
    from app.db.models import Component, ComponentState
    from app.healing.strategies.registry import StrategyRegistry

    recovery = {
        "strategies": [
            {
                "kind": "restart",
                "params": {"argv": ["/bin/bash", "-c", STAMP], "env": {"STAMPS": str(stamps)}, "timeout": 10},
            }
        ],
        "cooldown": 0,
        "backoff_initial": 0,
        "verify_timeout": VERIFY_TIMEOUT_S,
        "grace_period": RECOVERY_GRACE_S,
        "breaker_threshold": 100000,
    }
    # Stored as the API stores it (normalised, defaults filled in): a raw document would make every
    # heal fail after its command ran, and the retries would load the very path being measured.
    recovery = validate_recovery(recovery, StrategyRegistry(settings, load_entry_points=False))
    async with session_scope_for(url) as session:
        rows = [
            {
                "name": f"victim-{i}",
                "labels": {},
                "recovery": recovery,
                "enabled": True,
                "version": 1,
                "check": {"kind": "http", "url": f"{base}/c/victim-{i}", "interval": 0.5},
            }
            for i in range(victims)
        ]
        rows += [
            {
                "name": f"fleet-{i:05d}",
                "labels": {},
                "recovery": None,
                "enabled": True,
                "version": 1,
                "check": {"kind": "http", "url": f"{base}/c/fleet-{i}", "interval": 10},
            }
            for i in range(fleet)
        ]
        for start in range(0, len(rows), 2000):
            await session.execute(insert(Component), rows[start : start + 2000])
        await session.flush()
        ids = (await session.execute(select(Component.id))).scalars().all()
        await session.execute(insert(ComponentState), [{"component_id": i} for i in ids])


async def reaction(url: str, base: str, args, tmp: Path) -> list[dict]:
    """Runs `args.rounds` rounds of `args.incidents` reactions against one database."""
    import aiohttp
    from sqlalchemy import text

    from app.config.settings import Settings
    from app.main import create_app
    from app.outbound.process import run_command

    stamps = tmp / "stamps"
    stamped = StampReader(stamps)
    settings = Settings(
        env="test",
        database_url=url,
        data_dir=tmp / "var",
        security={"secret_key": "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"},
        healing={"strategies": ["restart"], "max_concurrent": 50, "command_actions_enabled": True},
        pipeline={
            "monitoring": {"failure_threshold": 2, "success_threshold": 1, "recovery_grace": RECOVERY_GRACE_S}
        },
    )
    await seed(url, base, args.victims, args.fleet, stamps, settings)
    app = create_app(settings)  # every background service, as `pipeline-guard serve` runs them
    rounds: list[dict] = []
    async with app.router.lifespan_context(app), aiohttp.ClientSession() as http:
        guard = app.state.runtime
        scheduler = guard.monitoring.scheduler
        total = args.victims + args.fleet
        await wait_until(lambda: len(scheduler.tracked) == total, 120)
        # Steady state: every component has had its first result (the start-up wave is not measured).
        await wait_until(lambda: all(t.machine.status != "unknown" for t in scheduler.tracked.values()), 120)
        by_name = {t.name: cid for cid, t in scheduler.tracked.items()}
        attribution = None
        if args.attribute:
            from bench._attribution import Attribution

            attribution = Attribution()
            attribution.install(guard, {cid for name, cid in by_name.items() if name.startswith("victim-")})
        for _ in range(args.rounds):
            round_start = time.time()
            seen_before = set(stamped())
            done, misses = 0, []

            async def cycle(name: str, misses: list[str]) -> None:
                nonlocal done
                cid = by_name[name]
                while done < args.incidents:
                    await wait_until(lambda: scheduler.status_of(cid) == "healthy", 60)
                    # Past the stick window of the last heal (a break within it is a relapse by design).
                    await asyncio.sleep(VERIFY_TIMEOUT_S + random.uniform(0.2, 1.5))
                    if done >= args.incidents:
                        return
                    async with http.get(f"{base}/set", params={"name": name, "ok": "0"}):
                        pass
                    try:
                        await wait_until(lambda: incident_of(guard, cid) in stamped(), 60)
                        done += 1
                    except TimeoutError:
                        tracked = scheduler.tracked.get(cid)
                        machine = tracked.machine if tracked else None
                        misses.append(
                            await diagnose(guard, name, scheduler.status_of(cid))
                            + f"; tracked incident {incident_of(guard, cid)}, failures "
                            f"{machine.consecutive_failures if machine else None}, grace until "
                            f"{machine.grace_until if machine else None}"
                        )
                        if len(misses) > args.max_misses:
                            raise
                    async with http.get(f"{base}/set", params={"name": name, "ok": "1"}):
                        pass

            baseline: list[float] = []

            async def spawn_baseline(baseline: list[float]) -> None:
                for _ in range(args.baseline):
                    await asyncio.sleep(random.uniform(0.1, 0.4))
                    marker = next(MARKERS)
                    t0 = time.time()
                    await run_command(
                        ["/bin/bash", "-c", STAMP],
                        timeout=10,
                        env={
                            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                            "STAMPS": str(stamps),
                            "PIPELINE_GUARD_INCIDENT": str(marker),
                        },
                    )
                    baseline.append((stamped()[marker] - t0) * 1000)

            await asyncio.gather(
                spawn_baseline(baseline), *(cycle(f"victim-{i}", misses) for i in range(args.victims))
            )
            async with guard.sessionmaker() as session:
                opened_rows = (
                    await session.execute(text("SELECT id, component_id, opened_at FROM incidents"))
                ).all()
                opened = {incident_id: at for incident_id, _, at in opened_rows}
                claimed = dict(
                    (
                        await session.execute(
                            text(
                                "SELECT incident_id, MIN(started_at) FROM healing_attempts "
                                "GROUP BY incident_id"
                            )
                        )
                    ).all()
                )
                outcomes = dict(
                    (
                        await session.execute(
                            text("SELECT state, COUNT(*) FROM healing_attempts GROUP BY state ORDER BY state")
                        )
                    ).all()
                )
            fresh = {k: v for k, v in stamped().items() if k not in seen_before and k < 10**9}
            react, claim = [], []
            for incident_id, at in fresh.items():
                if incident_id in opened:
                    t_open = as_epoch(opened[incident_id])
                    react.append((at - t_open) * 1000)
                    if claimed.get(incident_id) is not None:
                        claim.append((as_epoch(claimed[incident_id]) - t_open) * 1000)
            stages = []
            if attribution is not None:
                stages = attribution.reactions(
                    {i: (cid, as_epoch(at)) for i, cid, at in opened_rows},
                    {k: v for k, v in fresh.items() if k in opened},
                )
            rounds.append(
                {
                    "react": react,
                    "claim": claim,
                    "baseline": baseline,
                    "misses": misses,
                    "outcomes": outcomes,
                    "stages": stages,
                    # results written beside a flush in progress (older trees have no urgent lane)
                    "lane": getattr(scheduler.writer, "urgent_lane_flushes", None),
                    "span": (round_start, time.time()),
                }
            )
        if attribution is not None:
            attribution.uninstall()
            rounds[-1]["attribution"] = attribution
    return rounds


def incident_of(guard, cid: int) -> int | None:
    tracked = guard.monitoring.scheduler.tracked.get(cid)
    return tracked.incident_id if tracked else None


def as_epoch(value) -> float:
    from datetime import UTC, datetime

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


async def diagnose(state, name: str, status: str | None) -> str:
    """Why no action started within a minute: the component's status, incidents and attempts."""
    from sqlalchemy import text

    async with state.sessionmaker() as session:
        incidents = (
            await session.execute(
                text(
                    "SELECT status, reason FROM healing_incidents WHERE component = :c "
                    "ORDER BY incident_id DESC LIMIT 2"
                ),
                {"c": name},
            )
        ).all()
        attempts = (
            await session.execute(
                text(
                    "SELECT state, detail FROM healing_attempts WHERE component = :c ORDER BY id DESC LIMIT 2"
                ),
                {"c": name},
            )
        ).all()
    return f"{name}: status {status}, incidents {incidents}, attempts {attempts}"


@contextlib.asynccontextmanager
async def session_scope_for(url: str):
    from app.config.settings import Settings
    from app.db.engine import create_engine, create_sessionmaker
    from app.db.session import session_scope

    engine = create_engine(Settings(database_url=url, env="test"))
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            yield session
    finally:
        await engine.dispose()


async def wait_until(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.02)


def report(db: str, rounds: list[dict], args, load0: list[str]) -> None:
    load1 = Path("/proc/loadavg").read_text().split()[:3]
    print(
        f"\n{db}: probe result -> restart command started, {args.rounds} rounds x {args.incidents} reactions "
        f"({args.fleet} components @10 s beside {args.victims} victims @0.5 s; load {' '.join(load0)} -> "
        f"{' '.join(load1)}; app {args.app_dir or ROOT})"
    )
    for i, r in enumerate(rounds, 1):
        for miss in r["misses"]:
            print(f"  round {i}: no action within 60 s: {miss}")
        print(f"  round {i}  reaction   {summary(r['react'])}")
        print(f"  round {i}  ..decide   {summary(r['claim'])}")
        print(f"  round {i}  baseline   {summary(r['baseline'])}   (bare spawn of the same command)")
    for key, label in (("react", "reaction"), ("baseline", "baseline")):
        p50s = [pct(r[key], 0.5) for r in rounds if r[key]]
        p99s = [pct(r[key], 0.99) for r in rounds if r[key]]
        if p99s:
            print(
                f"  {label:9s} over rounds: p50 median {statistics.median(p50s):.1f} ms "
                f"(spread {min(p50s):.1f}..{max(p50s):.1f})   p99 median {statistics.median(p99s):.1f} ms "
                f"(spread {min(p99s):.1f}..{max(p99s):.1f})"
            )
    if rounds:  # every reaction should be one attempt that heals: a failing one is retried and adds load
        outcomes = ", ".join(f"{state} {n}" for state, n in rounds[-1]["outcomes"].items())
        print(f"  attempts by state after the last round: {outcomes}")
        if rounds[-1]["lane"] is not None:
            print(f"  flushes in the urgent lane (beside a flush in progress): {rounds[-1]['lane']}")
    pooled = [v for r in rounds for v in r["react"]]
    print(f"  all reactions  {summary(pooled)}   target p99 <= 100 ms")
    if rounds and "attribution" in rounds[-1]:
        rounds[-1]["attribution"].report(
            [row for r in rounds for row in r["stages"]], rounds[0]["span"][0], rounds[-1]["span"][1]
        )


def run_db(db: str, base: str, args) -> None:
    from app.db.migrate import upgrade_sync

    load0 = Path("/proc/loadavg").read_text().split()[:3]
    with tempfile.TemporaryDirectory(prefix="pg-bench-") as tmp:
        if db == "sqlite":
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
            upgrade_sync(url)
            rounds = asyncio.run(reaction(url, base, args, Path(tmp)))
        else:
            from bench._server import migrated_pg_database, sa_url

            pg = os.environ["PIPELINE_TEST_POSTGRES_URL"].replace("postgresql+asyncpg://", "postgresql://", 1)
            with migrated_pg_database(pg) as dsn:
                rounds = asyncio.run(reaction(sa_url(dsn), base, args, Path(tmp)))
    report(db, rounds, args, load0)


def time_to_recover(runs: int) -> list[dict]:
    spec = importlib.util.spec_from_file_location("demo", ROOT / "examples" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    results = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="pg-bench-") as tmp:
            timeline = demo.run_demo(Path(tmp), how="crash", out=lambda _line: None, timeout=60)
        attempt = timeline.get("attempt") or {}
        results.append(
            {
                "break_to_healthy_s": timeline.get("healthy"),
                "ttr_s": attempt.get("time_to_recover_s"),
                "action_s": (attempt.get("decision") or {}).get("action_duration_s"),
                "resolved": "alert_resolved" in timeline.get("seen", []),
            }
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--incidents", type=int, default=50, help="reactions per round")
    parser.add_argument("--baseline", type=int, default=30, help="bare spawns per round")
    parser.add_argument("--victims", type=int, default=10)
    parser.add_argument("--fleet", type=int, default=1000)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--demo-runs", type=int, default=0)
    parser.add_argument(
        "--max-misses", type=int, default=3, help="reactions not seen within 60 s before a round gives up"
    )
    parser.add_argument(
        "--attribute",
        action="store_true",
        help="stamp every stage of each reaction, watch loop stalls and GC pauses (bench/_attribution.py)",
    )
    parser.add_argument("--app-dir", default=None, help="import the guard from this tree (before/after)")
    args = parser.parse_args()
    if args.app_dir:  # before anything imports `app`
        sys.path.insert(0, str(Path(args.app_dir).resolve()))
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    if "postgres" in dbs and not os.environ.get("PIPELINE_TEST_POSTGRES_URL"):
        print("PIPELINE_TEST_POSTGRES_URL not set: SQLite only")
        dbs.remove("postgres")
    from bench._server import free_port

    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", TARGETS, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        for db in dbs:
            run_db(db, f"http://127.0.0.1:{port}", args)
    finally:
        server.terminate()
        server.wait(10)
    if args.demo_runs:
        period, threshold = 1.0, 2  # examples/demo.yaml
        print(
            f"time to recover, demo worker crash ({args.demo_runs} runs; check period {period:g} s, "
            f"failure_threshold {threshold}):"
        )
        for r in time_to_recover(args.demo_runs):
            if r["break_to_healthy_s"] is None or r["action_s"] is None:
                print(f"  run did not heal: {r}")
                continue
            bound = period * threshold + r["action_s"] + period
            print(
                f"  crash -> verified healthy {r['break_to_healthy_s']:.2f} s (incident -> healthy "
                f"{r['ttr_s']:.2f} s)"
                f"   bound period*threshold + action + period = {bound:.2f} s"
                f"   (ratio {r['break_to_healthy_s'] / bound:.2f}; alert resolved: {r['resolved']})"
            )


if __name__ == "__main__":
    main()
