"""The replica lease tick against fleet size, on Postgres: one lease manager per fleet (one replica
holding every component, the worst case for renewals), ticked in-process, the fleets alternated
round by round so drift of the shared machine hits both alike.

    .venv/bin/python bench/leases.py [--small 100] [--large 20000] [--rounds 5] [--ticks 20]
                                     [--pg postgresql://postgres@127.0.0.1:5432/test]

Three kinds of tick, each timed (wall and this process's CPU, which is what stalls the requests the
same process serves):

* steady — nothing changed since the last tick (the common case, every poll, ≤ 1 s);
* renew  — the same, on a renewal tick (every ``renew_interval``): every lease is renewed;
* full   — the baseline: a (non-renewal) tick as it was before the assignment was kept between
  ticks, every component row re-read and every component assigned again (rendezvous hashing).

Headline: the steady tick at the large fleet over the small one (target: about 1, i.e. independent
of the fleet), and the full tick over the steady one at the large fleet. The renewal tick still
updates every lease row (one statement; the database's work grows with the leases held, the
process's CPU barely does).

The scheduler that takes this manager as its ownership refreshes every second too; two more kinds:

* refresh      — its refresh over an unchanged fleet and unchanged leases (the common case);
* refresh-full — the baseline: the same refresh made to diff the registry snapshot against every
  tracked component, as it did on every tick before it skipped the diff while nothing moved.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._server import migrated_pg_database, sa_url

KINDS = ("steady", "renew", "full", "refresh", "refresh-full")


async def seed(database_url: str, n: int) -> None:
    from sqlalchemy import insert

    from app.config.settings import Settings
    from app.db.engine import create_engine, create_sessionmaker
    from app.db.models import Component
    from app.db.session import session_scope

    engine = create_engine(Settings(database_url=database_url, env="test"))
    now = datetime.now(UTC)
    check = {"kind": "heartbeat", "period_s": 86400, "grace_s": 3600, "interval": 3600}
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            for start in range(0, n, 2000):
                await session.execute(
                    insert(Component.__table__),
                    [
                        {
                            "id": i,
                            "name": f"svc-{i:06d}",
                            "description": "",
                            "critical": False,
                            "labels": {"region": f"r{i % 4}"},
                            "region": f"r{i % 4}",
                            "check": check,
                            "recovery": None,
                            "enabled": True,
                            "source": "api",
                            "version": 1,
                            "created_at": now,
                            "updated_at": now,
                        }
                        for i in range(start + 1, min(n, start + 2000) + 1)
                    ],
                )
    finally:
        await engine.dispose()


class Fleet:
    def __init__(self, database_url: str, n: int):
        self.url, self.n = database_url, n

    async def start(self) -> None:
        from app.config.settings import Settings
        from app.db.engine import create_engine, create_sessionmaker
        from app.observability.metrics import GuardMetrics
        from app.platform.core import Core
        from app.platform.events import EventBus
        from app.replicas.manager import LeaseManager

        settings = Settings(database_url=self.url, env="test", replica_id=f"bench-{self.n}")
        self.engine = create_engine(settings)
        core = Core(
            settings=settings,
            metrics=GuardMetrics(),
            sessionmaker=create_sessionmaker(self.engine),
            events=EventBus(),
        )
        self.manager = LeaseManager(core, dialect="postgresql")
        await self.manager.run_once()
        await self.manager.run_once()
        if len(self.manager.epochs) != self.n:
            raise RuntimeError(f"the manager holds {len(self.manager.epochs)} of {self.n} leases")
        self.scheduler = self._scheduler(core)
        await self.scheduler.refresh()  # the first refresh loads every component
        if len(self.scheduler.tracked) != self.n:
            raise RuntimeError(f"the scheduler tracks {len(self.scheduler.tracked)} of {self.n}")

    def _scheduler(self, core):
        from app.health.health_map import HealthMap
        from app.monitoring.scheduler import Scheduler

        # No probe runs here: the check metrics and the secret box are never reached by a refresh.
        return Scheduler(
            core,
            ownership=self.manager,
            health=HealthMap(),
            critical=set(),
            secret_box=None,  # type: ignore[arg-type]
            check_metrics=None,  # type: ignore[arg-type]
        )

    async def refresh(self, kind: str) -> tuple[float, float]:
        s = self.scheduler
        if kind == "refresh-full":
            s._diffed = None  # diff the snapshot against every tracked component, as every tick once did
        wall, cpu = time.perf_counter(), time.process_time()
        await s.refresh()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if len(s.tracked) != self.n:
            raise RuntimeError(f"the scheduler lost components: tracks {len(s.tracked)} of {self.n}")
        return wall * 1000, cpu * 1000

    async def tick(self, kind: str) -> tuple[float, float]:
        if kind.startswith("refresh"):
            return await self.refresh(kind)
        m = self.manager
        # Renewals only where asked for (each round renews every lease well within the lease TTL).
        m._last_renew = -1e18 if kind == "renew" else time.monotonic()
        if kind == "full":
            # Forget what the tick keeps between ticks: the component rows and the assignment.
            m.store._ids = None
            m._settled = m._desired_cache = None
        wall, cpu = time.perf_counter(), time.process_time()
        await m.run_once()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if len(m.epochs) != self.n:
            raise RuntimeError(f"the manager lost leases: holds {len(m.epochs)} of {self.n}")
        return wall * 1000, cpu * 1000

    async def stop(self) -> None:
        await self.manager.release_all()
        await self.engine.dispose()


def stats(values: list[float]) -> str:
    return f"{statistics.median(values):7.2f} [{min(values):6.2f}..{max(values):7.2f}]"


async def run(urls: dict[int, str], rounds: int, ticks: int) -> None:
    fleets = {n: Fleet(url, n) for n, url in urls.items()}
    for fleet in fleets.values():
        await fleet.start()
    # per round: median per (fleet, kind) of `ticks` ticks
    wall: dict[tuple[int, str], list[float]] = {}
    cpu: dict[tuple[int, str], list[float]] = {}
    order = list(fleets)
    try:
        for r in range(rounds):
            for n in order if r % 2 == 0 else reversed(order):
                for kind in KINDS:
                    samples = [await fleets[n].tick(kind) for _ in range(ticks)]
                    wall.setdefault((n, kind), []).append(statistics.median(s[0] for s in samples))
                    cpu.setdefault((n, kind), []).append(statistics.median(s[1] for s in samples))
    finally:
        for fleet in fleets.values():
            await fleet.stop()
    small, large = order
    print(f"\nload average: {os.getloadavg()}  rounds={rounds} ticks/round={ticks}")
    print("per tick, median over rounds of the per-round median [min..max of rounds], ms")
    print(f"{'fleet':>7} {'kind':>7} {'wall':>26} {'cpu':>26}")
    for n in order:
        for kind in KINDS:
            print(f"{n:>7} {kind:>7} {stats(wall[(n, kind)]):>26} {stats(cpu[(n, kind)]):>26}")

    def ratio(a: list[float], b: list[float]) -> str:
        per_round = [x / y for x, y in zip(a, b, strict=True) if y > 0]
        return stats(per_round)

    print("\nratios (per round, median [min..max]):")
    for kind in ("steady", "renew", "refresh"):
        print(
            f"  {kind} tick, {large} over {small} components: "
            f"wall {ratio(wall[(large, kind)], wall[(small, kind)])}  "
            f"cpu {ratio(cpu[(large, kind)], cpu[(small, kind)])}"
        )
    print(
        f"  at {large}: full (baseline) over steady: "
        f"wall {ratio(wall[(large, 'full')], wall[(large, 'steady')])}  "
        f"cpu {ratio(cpu[(large, 'full')], cpu[(large, 'steady')])}"
    )
    print(
        f"  at {large}: refresh-full (baseline) over refresh: "
        f"wall {ratio(wall[(large, 'refresh-full')], wall[(large, 'refresh')])}  "
        f"cpu {ratio(cpu[(large, 'refresh-full')], cpu[(large, 'refresh')])}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ticks", type=int, default=20)
    parser.add_argument(
        "--pg",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="postgresql://... (a scratch database per fleet is made beside it)",
    )
    args = parser.parse_args()
    with migrated_pg_database(args.pg) as small_dsn, migrated_pg_database(args.pg) as large_dsn:
        urls = {args.small: sa_url(small_dsn), args.large: sa_url(large_dsn)}
        for n, url in urls.items():
            asyncio.run(seed(url, n))
        asyncio.run(run(urls, args.rounds, args.ticks))


if __name__ == "__main__":
    main()
