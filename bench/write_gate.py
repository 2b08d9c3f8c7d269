"""SQLite write gate benchmark: a reaction's write transactions among routine writers of one process.

`--writers` routine tasks each run transactions back to back (an INSERT, `--hold-ms` of other work
with SQLite's write lock held, COMMIT: flush-like writers), while one reaction task runs
`--reactions` transactions, one every 10-30 ms, each as a healing decision does (BEGIN IMMEDIATE,
two reads, an INSERT, COMMIT, then an UPDATE and its COMMIT: the claim and the acting marker) inside
``reaction_writes()``. Per transaction: start -> commit done, reaction and routine apart.
Two engines on a file database, alternated `--rounds` times each under the same load:
  gate           the engine the guard builds (app/db/write_gate.py: in-process writers are handed
                 the lock in order on their connections' threads, the reaction's first, no polling)
  busy handler   the baseline: same pool, PRAGMAs and timeout, writers polling SQLite's busy
                 handler (sleeping 1..100 ms between retries), as before the gate
Median and spread (min..max) over rounds of each round's p50 and p99; the load before and after.
It shows the lock's hand-over alone; bench/healing.py shows the reaction end to end.

    .venv/bin/python bench/write_gate.py [--rounds 6] [--writers 4] [--reactions 60] [--hold-ms 2]
    .venv/bin/python bench/write_gate.py --app-dir /tmp/other_tree   # another tree with a gate
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import event, text  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def busy_handler_engine(url: str, settings):
    """The baseline: what create_engine builds without the gate (same pool, PRAGMAs and timeout)."""
    from app.db import engine as engine_mod

    db = settings.database
    engine = create_async_engine(
        url,
        connect_args={"timeout": db.statement_timeout},
        pool_size=db.pool_size,
        max_overflow=db.max_overflow,
        pool_timeout=db.pool_timeout,
    )
    event.listen(engine.sync_engine, "connect", engine_mod._sqlite_pragmas(int(db.statement_timeout * 1000)))
    return engine


async def run(engine, writers: int, reactions: int, hold_s: float) -> tuple[list[float], list[float]]:
    from app.db.write_gate import reaction_writes

    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS w (id INTEGER PRIMARY KEY, who INTEGER)"))
        await conn.execute(text("CREATE TABLE IF NOT EXISTS a (id INTEGER PRIMARY KEY, acting INTEGER)"))
    routine: list[float] = []
    reacted: list[float] = []
    done = asyncio.Event()

    async def writer(who: int) -> None:
        while not done.is_set():
            t0 = time.perf_counter()
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO w (who) VALUES (:who)"), {"who": who})
                await asyncio.sleep(hold_s)
            routine.append(time.perf_counter() - t0)

    async def reaction() -> None:
        for _ in range(reactions):
            await asyncio.sleep(random.uniform(0.01, 0.03))
            t0 = time.perf_counter()
            with reaction_writes():
                async with engine.connect() as conn:
                    await conn.exec_driver_sql("BEGIN IMMEDIATE")
                    await conn.execute(text("SELECT count(*) FROM a"))
                    await conn.execute(text("SELECT max(id) FROM w"))
                    row = await conn.execute(text("INSERT INTO a (acting) VALUES (0) RETURNING id"))
                    attempt = row.scalar_one()
                    await conn.commit()
                    await conn.execute(text("UPDATE a SET acting = 1 WHERE id = :id"), {"id": attempt})
                    await conn.commit()
            reacted.append(time.perf_counter() - t0)
        done.set()

    await asyncio.gather(reaction(), *(writer(i) for i in range(writers)))
    return reacted, routine


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--reactions", type=int, default=60)
    parser.add_argument("--hold-ms", type=float, default=2.0)
    parser.add_argument("--app-dir", default=None, help="import the guard from this tree")
    args = parser.parse_args()
    if args.app_dir:  # before anything imports `app`
        sys.path.insert(0, str(Path(args.app_dir).resolve()))
    from app.config.settings import Settings
    from app.db.engine import create_engine

    try:
        from app.db.engine import write_gate
    except ImportError:
        sys.exit("this tree has no SQLite write gate (app/db/write_gate.py)")

    load0 = Path("/proc/loadavg").read_text().split()[:3]
    kinds = ("gate", "busy handler")
    results: dict[str, dict[str, list[tuple[float, float]]]] = {
        k: {"reaction": [], "routine": []} for k in kinds
    }
    with tempfile.TemporaryDirectory(prefix="gate-bench-") as tmp:
        for i in range(args.rounds):
            for kind in kinds if i % 2 == 0 else kinds[::-1]:
                url = f"sqlite+aiosqlite:///{tmp}/{kind.replace(' ', '_')}_{i}.db"
                settings = Settings(database_url=url, env="test")
                engine = create_engine(settings) if kind == "gate" else busy_handler_engine(url, settings)
                assert (write_gate(engine) is not None) == (kind == "gate")
                reacted, routine = await run(engine, args.writers, args.reactions, args.hold_ms / 1000)
                await engine.dispose()
                for name, values in (("reaction", reacted), ("routine", routine)):
                    ms = [v * 1000 for v in values]
                    results[kind][name].append((pct(ms, 0.5), pct(ms, 0.99)))
    load1 = Path("/proc/loadavg").read_text().split()[:3]
    print(
        f"1 reaction task x {args.reactions} decisions (claim + acting marker) among {args.writers} routine "
        f"writers (INSERT, {args.hold_ms:g} ms held, COMMIT), {args.rounds} rounds each, alternating; "
        f"load {' '.join(load0)} -> {' '.join(load1)}"
    )
    for kind in kinds:
        for name, rounds in results[kind].items():
            p50s, p99s = zip(*rounds, strict=True)
            print(
                f"  {kind:13s} {name:8s} p50 median {statistics.median(p50s):6.1f} ms "
                f"({min(p50s):.1f}..{max(p50s):.1f})   p99 median {statistics.median(p99s):6.1f} ms "
                f"({min(p99s):.1f}..{max(p99s):.1f})"
            )


if __name__ == "__main__":
    asyncio.run(main())
