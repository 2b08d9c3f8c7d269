"""SQLite write gate benchmark: short write transactions of one process competing for the write lock.

`--writers` tasks each run `--transactions` transactions (an INSERT, `--hold-ms` of other work with
the lock held, COMMIT) on a file database, through the engine the guard builds (its writers queue
on the engine's write gate, app/db/write_gate.py) and, as the baseline in the same run, through an
engine with the same pool and PRAGMAs whose writers wait in SQLite's busy handler. Per transaction:
start -> commit done. The two are run alternately, `--rounds` times each, under the same load.

    .venv/bin/python bench/write_gate.py [--rounds 4] [--writers 8] [--transactions 50] [--hold-ms 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import event, text  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from app.config.settings import Settings  # noqa: E402
from app.db import engine as engine_mod  # noqa: E402
from app.db.engine import create_engine, write_gate  # noqa: E402


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def busy_handler_engine(url: str, settings):
    """The baseline: what create_engine built before the gate (same pool, PRAGMAs and timeout)."""
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


async def run(engine, writers: int, transactions: int, hold_s: float) -> tuple[list[float], float]:
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS w (id INTEGER PRIMARY KEY, who INTEGER)"))
    latencies: list[float] = []

    async def writer(who: int) -> None:
        for _ in range(transactions):
            t0 = time.perf_counter()
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO w (who) VALUES (:who)"), {"who": who})
                await asyncio.sleep(hold_s)
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(writer(i) for i in range(writers)))
    return latencies, time.perf_counter() - t0


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--transactions", type=int, default=50)
    parser.add_argument("--hold-ms", type=float, default=2.0)
    args = parser.parse_args()
    load0 = Path("/proc/loadavg").read_text().split()[:3]
    results: dict[str, list[tuple[float, float, float]]] = {"gate": [], "busy handler": []}
    with tempfile.TemporaryDirectory(prefix="gate-bench-") as tmp:
        for i in range(args.rounds):
            for kind in ("gate", "busy handler") if i % 2 == 0 else ("busy handler", "gate"):
                url = f"sqlite+aiosqlite:///{tmp}/{kind.replace(' ', '_')}_{i}.db"
                settings = Settings(database_url=url, env="test")
                engine = create_engine(settings) if kind == "gate" else busy_handler_engine(url, settings)
                assert (write_gate(engine) is not None) == (kind == "gate")
                latencies, wall = await run(engine, args.writers, args.transactions, args.hold_ms / 1000)
                await engine.dispose()
                ms = [v * 1000 for v in latencies]
                results[kind].append((pct(ms, 0.5), pct(ms, 0.99), len(ms) / wall))
    load1 = Path("/proc/loadavg").read_text().split()[:3]
    print(
        f"{args.writers} writers x {args.transactions} transactions (INSERT, {args.hold_ms:g} ms held, "
        f"COMMIT), {args.rounds} rounds each, alternating; load {' '.join(load0)} -> {' '.join(load1)}"
    )
    for kind, rounds in results.items():
        p50s, p99s, rates = zip(*rounds, strict=True)
        print(
            f"  {kind:13s} transaction p50 median {statistics.median(p50s):6.1f} ms "
            f"({min(p50s):.1f}..{max(p50s):.1f})   p99 median {statistics.median(p99s):6.1f} ms "
            f"({min(p99s):.1f}..{max(p99s):.1f})   {statistics.median(rates):5.0f} tx/s"
        )


if __name__ == "__main__":
    asyncio.run(main())
