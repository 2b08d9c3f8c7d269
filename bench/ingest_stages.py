"""Where an ingested point's CPU goes, stage by stage, beside the raw driver writing the same rows.

    .venv/bin/python bench/ingest_stages.py [--pg postgresql://postgres@127.0.0.1:5432/test]
                                            [--points 200000] [--rounds 3] [--only pg|sqlite]
                                            [--shape points|series]

In one process, without HTTP: each 10k-point body of ``bench/ingest.py`` goes through the app's own
ingest pieces (``decode_batch``; the dialect's ``insert_points``, ``build_deltas`` +
``insert_rollups`` and ``upsert_series`` on a real session; the commit; and, every
``COMPACT_EVERY`` batches, the rollup compactor's rounds over the deltas written so far, as the
compaction loop would run them, split into taking the rows, merging, writing back and the commit),
and each stage's CPU per point is measured: this process's CPU (decoding, encoding, the driver;
SQLite's own work too, which runs in this process) and, on Postgres, the CPU of the session's
backend, printed apart as "<stage> [postgres]". The raw rounds write the same rows the way
``bench/ingest.py``'s baseline does. What the HTTP path costs on top (the server's framework, auth,
audit, the HTTP body) is ``bench/ingest.py``'s app CPU minus the sum printed here.
Rounds alternate raw and app; medians over rounds. Scratch databases and files are removed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
from sqlalchemy import text

from app.config.settings import Settings
from app.db.engine import create_engine, create_sessionmaker
from app.db.migrate import upgrade_sync
from app.metrics.compaction import round_rows
from app.metrics.decode import decode_batch
from app.metrics.ingest_pg import ingest_for
from app.metrics.rollups import build_deltas
from bench._server import migrated_pg_database, sa_url
from bench.ingest import POINT_COLUMNS, SQLITE_TS, make_batches, process_cpu, spread

# The compaction loop runs every 15 s; at ~100k points/s that is many batches. Every 20 batches is
# the conservative side (fewer deltas merged per compacted row and round).
COMPACT_EVERY = 20


async def app_stages(database_url: str, bodies: list[bytes]) -> dict[str, float]:
    """CPU seconds per stage over ``bodies``, through the app's ingest pieces (one transaction each)."""
    engine = create_engine(Settings(database_url=database_url, env="test"))
    sessions = create_sessionmaker(engine)
    spent: defaultdict[str, float] = defaultdict(float)
    build_deltas(decode_batch(bodies[0]))  # untimed: lazy imports, as a running server has long done
    try:
        for i, body in enumerate(bodies):
            async with sessions() as session:
                ingest = ingest_for(engine.dialect.name)
                backend = None
                if engine.dialect.name == "postgresql":
                    backend = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()

                def clock(backend=backend) -> tuple[float, float]:
                    return time.process_time(), (process_cpu(backend) if backend else 0.0)

                def add(stage: str, since: tuple[float, float], clock=clock, backend=backend) -> None:
                    now = clock()
                    spent[stage] += now[0] - since[0]
                    if backend:
                        spent[f"{stage} [postgres]"] += now[1] - since[1]

                t = time.process_time()
                batch = decode_batch(body)
                spent["decode"] += time.process_time() - t
                c = clock()
                await ingest.insert_points(session, batch)
                add("points", c)
                t = time.process_time()
                rows = build_deltas(batch)
                spent["rollup deltas (build)"] += time.process_time() - t
                c = clock()
                await ingest.insert_rollups(session, rows)
                add("rollup deltas (write)", c)
                c = clock()
                latest = sorted(
                    ((batch.series[sid], i) for sid, i in batch.latest().items()),
                    key=lambda si: (si[0].component, si[0].metric_name, si[0].series_key),
                )
                await ingest.upsert_series(
                    session, [(s, *batch.value_and_time(i)) for s, i in latest], datetime.now(UTC)
                )
                add("series upsert", c)
                c = clock()
                await session.commit()
                add("commit", c)
            if (i + 1) % COMPACT_EVERY == 0 or i == len(bodies) - 1:
                async with sessions() as session:
                    backend = None
                    if engine.dialect.name == "postgresql":
                        backend = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
                    await compact(session, ingest_for(engine.dialect.name), spent, backend)
    finally:
        await engine.dispose()
    return spent


async def compact(session, ingest, spent: defaultdict[str, float], backend: int | None) -> None:
    """The compactor's rounds (``compaction.compact_round_rows``) until a round takes less than a
    full batch, each piece timed apart: taking the deltas and their buckets' compacted rows out of
    the table (one statement on Postgres), merging them (this process only) and writing every
    bucket back (the bulk insert), then the commit."""

    def clock() -> tuple[float, float]:
        return time.process_time(), (process_cpu(backend) if backend else 0.0)

    def add(stage: str, since: tuple[float, float]) -> None:
        now = clock()
        spent[stage] += now[0] - since[0]
        if backend:
            spent[f"{stage} [postgres]"] += now[1] - since[1]

    while True:
        c = clock()
        claimed, rows, fresh = await ingest.take_rollups(session, 5000)
        add("compaction take", c)
        t = time.process_time()
        out = round_rows(rows, fresh)
        spent["compaction merge"] += time.process_time() - t
        c = clock()
        if out:
            await ingest.insert_rollups(session, out)
        add("compaction write", c)
        if claimed < 5000:
            break
    c = clock()
    await session.commit()
    add("compaction commit", c)


async def raw_pg(dsn: str, records: list[list[tuple]]) -> dict[str, float]:
    conn = await asyncpg.connect(dsn)
    try:
        backend = conn.get_server_pid()
        c0, b0 = time.process_time(), process_cpu(backend)
        for recs in records:
            await conn.copy_records_to_table("metric_points", columns=POINT_COLUMNS, records=recs)
        return {"client": time.process_time() - c0, "postgres": process_cpu(backend) - b0}
    finally:
        await conn.close()


def raw_sqlite(path: Path, records: list[list[tuple]]) -> dict[str, float]:
    rows = [[(c, m, k, lab, v, ts.strftime(SQLITE_TS)) for c, m, k, lab, v, ts in recs] for recs in records]
    conn = sqlite3.connect(path, timeout=5)
    try:
        for pragma in ("journal_mode=WAL", "foreign_keys=ON", "busy_timeout=5000", "synchronous=NORMAL"):
            conn.execute(f"PRAGMA {pragma}")
        sql = f"INSERT INTO metric_points ({', '.join(POINT_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)"
        c0 = time.process_time()
        for recs in rows:
            with conn:
                conn.executemany(sql, recs)
        return {"executemany + commit": time.process_time() - c0}
    finally:
        conn.close()


def report(name: str, rounds: list[dict[str, float]], points: int) -> float:
    keys = list(rounds[0])
    total = [sum(r.values()) / points * 1e6 for r in rounds]
    parts = ", ".join(f"{k} {statistics.median(r[k] for r in rounds) / points * 1e6:.2f}" for k in keys)
    print(f"  {name}: {parts} | total {spread(total)}")
    return statistics.median(total)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--points", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", choices=("pg", "sqlite"), default=None)
    ap.add_argument("--shape", choices=("points", "series"), default="points", help="the bodies' shape")
    args = ap.parse_args()
    shaped, records = make_batches(args.points, 10_000)
    bodies = shaped[args.shape]
    print(
        f"load before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores; {args.shape} bodies; "
        "CPU us per point, median"
    )
    if args.only != "sqlite":
        app, raw = [], []
        for _ in range(args.rounds):
            with migrated_pg_database(args.pg) as dsn:
                raw.append(asyncio.run(raw_pg(dsn, records)))
            with migrated_pg_database(args.pg) as dsn:
                app.append(asyncio.run(app_stages(sa_url(dsn), bodies)))
        print(
            f"postgres ({args.points:,} points, {args.rounds} rounds; app stages = this process + backend):"
        )
        a, r = report("app", app, args.points), report("raw COPY", raw, args.points)
        print(f"  raw/app CPU: {r / a:.2f}")
    if args.only != "pg":
        app, raw = [], []
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "raw.db"
                upgrade_sync(f"sqlite+aiosqlite:///{path}")
                raw.append(raw_sqlite(path, records))
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite+aiosqlite:///{Path(tmp) / 'app.db'}"
                upgrade_sync(url)
                app.append(asyncio.run(app_stages(url, bodies)))
        print(f"sqlite ({args.points:,} points, {args.rounds} rounds; SQLite's work is in this process):")
        a, r = report("app", app, args.points), report("raw executemany", raw, args.points)
        print(f"  raw/app CPU: {r / a:.2f}")
    print(f"load after: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
