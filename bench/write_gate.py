"""SQLite writer gate: how long a writer waits for SQLite's write lock among the guard's other writers.

One process, one SQLite file, the engine `create_engine` builds (WAL, the pool, the busy timeout).
`--writers` background tasks each run flush-like transactions back to back (a read, then `--statements`
writes with the event loop free between them, as a flush and its subscribers do) with a random pause
of 0-`--pause-ms` between transactions. Beside them a "reaction" task asks for a short write
transaction (a read, `hold_write_lock`, two writes, commit) every 20-60 ms; its latency is measured from
asking to commit. Rounds alternate the same engine without the gate (SQLite's busy handler, as
before: the baseline), with the gate in arrival order, and with the gate and the reaction marked as
one (`reaction_writes`), so all see the same load; each round prints p50/p99 of the reaction's
latency and the background transactions per second, then the medians and spreads over rounds.

    .venv/bin/python bench/write_gate.py [--rounds 6] [--seconds 8] [--writers 4] [--statements 8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


MODES = ("busy handler", "gate, in order", "gate, reaction first")


async def one_round(url: str, mode: str, args) -> dict:
    from sqlalchemy import text

    import app.db.engine as engine_module
    from app.config.settings import Settings
    from app.db.session import hold_write_lock, session_scope
    from app.db.write_gate import reaction_writes

    gated = mode != "busy handler"
    first = mode == "gate, reaction first"
    install = engine_module.install_write_gate
    if not gated:  # the same engine without the gate: SQLite's busy handler alone, as before
        engine_module.install_write_gate = lambda *_a, **_k: None  # type: ignore[assignment]
    try:
        engine = engine_module.create_engine(Settings(database_url=url, env="test"), url=url)
    finally:
        engine_module.install_write_gate = install
    sessions = engine_module.create_sessionmaker(engine)
    stop = asyncio.Event()
    background = 0
    latencies: list[float] = []

    async def writer(n: int) -> None:
        nonlocal background
        while not stop.is_set():
            async with session_scope(sessions) as session:
                await session.execute(text("SELECT COUNT(*) FROM work WHERE w = :w"), {"w": n})
                for i in range(args.statements):
                    await session.execute(text("INSERT INTO work (w, i) VALUES (:w, :i)"), {"w": n, "i": i})
            background += 1
            await asyncio.sleep(random.uniform(0, args.pause_ms / 1000))

    async def reaction() -> None:
        while not stop.is_set():
            await asyncio.sleep(random.uniform(0.02, 0.06))
            t0 = time.perf_counter()
            with reaction_writes() if first else contextlib.nullcontext():
                async with session_scope(sessions) as session:
                    await session.execute(text("SELECT COUNT(*) FROM work WHERE w = -1"))
                    await hold_write_lock(session)
                    await session.execute(text("INSERT INTO work (w, i) VALUES (-1, 0)"))
                    await session.execute(text("UPDATE work SET i = i + 1 WHERE w = -1 AND i = 0"))
            latencies.append((time.perf_counter() - t0) * 1000)

    async def busy_loop() -> None:  # the event loop's other work (probes, HTTP): a hand-over waits for it
        while not stop.is_set():
            end = time.perf_counter() + args.loop_busy_ms / 1000
            while time.perf_counter() < end:
                pass
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(writer(n)) for n in range(args.writers)]
    if args.loop_busy_ms > 0:
        tasks.append(asyncio.create_task(busy_loop()))
    tasks.append(asyncio.create_task(reaction()))
    await asyncio.sleep(args.seconds)
    stop.set()
    await asyncio.gather(*tasks)
    async with session_scope(sessions) as session:
        await session.execute(text("DELETE FROM work"))
    await engine.dispose()
    return {"lat": latencies, "tps": background / args.seconds}


async def main_async(args) -> None:
    from sqlalchemy import text

    from app.config.settings import Settings
    from app.db.engine import create_engine

    with tempfile.TemporaryDirectory(prefix="pg-bench-") as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'gate.db'}"
        engine = create_engine(Settings(database_url=url, env="test"), url=url)
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE work (w INTEGER, i INTEGER)"))
            await conn.execute(text("CREATE INDEX work_w ON work (w)"))
        await engine.dispose()
        load0 = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        results: dict[str, list[dict]] = {mode: [] for mode in MODES}
        for r in range(args.rounds):
            order = MODES if r % 2 == 0 else MODES[::-1]  # the same load for each, alternating who goes first
            for mode in order:
                res = await one_round(url, mode, args)
                results[mode].append(res)
                print(
                    f"  round {r + 1} {mode:20s}  reaction p50 {pct(res['lat'], 0.5):7.1f}  p99 "
                    f"{pct(res['lat'], 0.99):7.1f} ms (n={len(res['lat'])})   background "
                    f"{res['tps']:6.1f} tx/s"
                )
        load1 = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(
        f"\n{args.writers} writers x {args.statements} writes per transaction beside a reaction writer, "
        f"{args.rounds} paired rounds of {args.seconds:g} s, loop busy {args.loop_busy_ms:g} ms per turn "
        f"(load {load0} -> {load1})"
    )
    for mode in MODES:
        rounds = results[mode]
        p50s = [pct(r["lat"], 0.5) for r in rounds]
        p99s = [pct(r["lat"], 0.99) for r in rounds]
        tps = [r["tps"] for r in rounds]
        print(
            f"  {mode + (' (baseline)' if mode == MODES[0] else ''):24s} reaction p50 median "
            f"{statistics.median(p50s):6.1f} ms ({min(p50s):.1f}..{max(p50s):.1f})   p99 median "
            f"{statistics.median(p99s):6.1f} ms ({min(p99s):.1f}..{max(p99s):.1f})   background median "
            f"{statistics.median(tps):.1f} tx/s ({min(tps):.1f}..{max(tps):.1f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--statements", type=int, default=8)
    parser.add_argument("--pause-ms", type=float, default=20.0)
    parser.add_argument(
        "--loop-busy-ms", type=float, default=0.0, help="a task keeps the event loop busy this long per turn"
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
