"""Metric ingest through the real app (uvicorn, auth, rate limiter, validation, rollups, series
upsert) against the raw driver writing the same rows into the same table, in PAIRED rounds.

    .venv/bin/python bench/ingest.py [--pg postgresql://postgres@127.0.0.1:5432/test] [--points 1000000]
                                     [--sqlite-points 200000] [--rounds 3] [--connections 2]

Postgres: each round runs raw asyncpg COPY into ``metric_points`` of a fresh migrated database over
``--connections`` connections, then the same points over HTTP (``/api/v1/metrics/batch``, 10k-point
batches) from as many concurrent writers into another fresh database and server. SQLite: raw
``sqlite3`` executemany of the same rows (same table, same PRAGMAs, one connection: SQLite has one
writer) vs HTTP from ``--connections`` writers, each on a fresh database file. The machine is
shared and noisy, so each round's ratio compares two runs made seconds apart; the median ratio and
its spread (min-max over rounds) are the figures. Targets: Postgres HTTP >= 0.8x raw COPY,
SQLite HTTP >= 0.6x raw executemany.

The client authenticates as an ``ingest``-role user, so every batch pays for auth, the "metrics"
rate-limit group, validation, the points, rollup deltas and the series upsert, all in one transaction.
Scratch databases and directories are removed at the end of each run.
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import asyncpg
import orjson

from app.db.migrate import upgrade_sync
from bench._server import PASSWORD, Server, migrated_pg_database, sa_url

SERIES = 100
POINT_COLUMNS = ("component", "metric_name", "series_key", "labels", "value", "ts")
SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy's SQLite DateTime stores a (naive UTC) timestamp


def make_batches(points: int, batch: int) -> tuple[list[bytes], list[list[tuple]]]:
    """Bodies for HTTP and the same points as table rows: 100 series, 1 point/series/second."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=points // SERIES + 60)
    bodies, records = [], []
    labels = [{"host": f"h{s % 10}", "stage": f"s{s // 10}"} for s in range(SERIES)]
    keys = [orjson.dumps(lab, option=orjson.OPT_SORT_KEYS).decode() for lab in labels]
    for b in range(0, points, batch):
        items, recs = [], []
        for i in range(b, min(b + batch, points)):
            s = i % SERIES
            ts = start + timedelta(seconds=i // SERIES)
            value = float((i * 7919) % 1000) / 10.0
            items.append(
                {
                    "component": f"comp{s % 10}",
                    "metric_name": "rows_processed",
                    "value": value,
                    "labels": labels[s],
                    "timestamp": ts.isoformat(),
                }
            )
            recs.append((f"comp{s % 10}", "rows_processed", keys[s], keys[s], value, ts))
        bodies.append(orjson.dumps({"points": items}))
        records.append(recs)
    return bodies, records


WARMUP = orjson.dumps({"points": [{"component": "warmup", "metric_name": "warmup", "value": 1.0}]})


async def http_ingest(
    base_url: str, bodies: list[bytes], concurrency: int, cpu_seconds
) -> tuple[float, float]:
    """(seconds, server CPU seconds) for ``bodies`` from ``concurrency`` writers. The token and one
    one-point batch come first, untimed: a long-running server has long paid for its first request
    (lazy imports, route and schema set-up) and for the login's password hash."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:
        async with http.post(
            f"{base_url}/api/v1/auth/token", data={"username": "bench-ingest", "password": PASSWORD}
        ) as r:
            token = (await r.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)

        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                async with http.post(f"{base_url}/api/v1/metrics/batch", data=body, headers=headers) as r:
                    if r.status != 201:
                        raise RuntimeError(f"HTTP {r.status}: {(await r.text())[:300]}")

        async with http.post(f"{base_url}/api/v1/metrics/batch", data=WARMUP, headers=headers) as r:
            assert r.status == 201, await r.text()
        t0, cpu0 = time.perf_counter(), cpu_seconds()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - t0, cpu_seconds() - cpu0


# --- Postgres ----------------------------------------------------------------------------------
async def _pg_copy(dsn: str, records: list[list[tuple]], connections: int) -> float:
    conns = [await asyncpg.connect(dsn) for _ in range(connections)]

    async def one(conn, chunks):
        for recs in chunks:
            await conn.copy_records_to_table("metric_points", columns=POINT_COLUMNS, records=recs)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(c, records[i::connections]) for i, c in enumerate(conns)))
    elapsed = time.perf_counter() - t0
    for c in conns:
        await c.close()
    return elapsed


async def _pg_count(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT count(*) FROM metric_points")
    finally:
        await conn.close()


def pg_raw(base: str, records: list[list[tuple]], connections: int) -> float:
    with migrated_pg_database(base) as dsn:
        return asyncio.run(_pg_copy(dsn, records, connections))


def pg_http(base: str, bodies: list[bytes], points: int, writers: int) -> tuple[float, float]:
    """(seconds, app CPU seconds) of HTTP ingest into a fresh database through a fresh server."""
    with migrated_pg_database(base) as dsn:
        with tempfile.TemporaryDirectory() as tmp, Server(sa_url(dsn), Path(tmp)) as server:
            seconds, cpu = asyncio.run(http_ingest(server.base_url, bodies, writers, server.cpu_seconds))
        stored = asyncio.run(_pg_count(dsn)) - 1  # the warm-up point
    assert stored == points, (stored, points)
    return seconds, cpu


# --- SQLite ------------------------------------------------------------------------------------
def sqlite_raw(records: list[list[tuple]]) -> tuple[float, float]:
    """(seconds, CPU seconds) of sqlite3 executemany, one transaction per batch, into the migrated
    table of a fresh database file, with the app's PRAGMAs."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "raw.db"
        upgrade_sync(f"sqlite+aiosqlite:///{path}")
        rows = [
            [(c, m, k, lab, v, ts.strftime(SQLITE_TS)) for c, m, k, lab, v, ts in recs] for recs in records
        ]
        conn = sqlite3.connect(path, timeout=5)
        for pragma in ("journal_mode=WAL", "foreign_keys=ON", "busy_timeout=5000", "synchronous=NORMAL"):
            conn.execute(f"PRAGMA {pragma}")
        sql = f"INSERT INTO metric_points ({', '.join(POINT_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)"
        t0, c0 = time.perf_counter(), time.process_time()
        for recs in rows:
            with conn:
                conn.executemany(sql, recs)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        stored = conn.execute("SELECT count(*) FROM metric_points").fetchone()[0]
        conn.close()
    assert stored == sum(map(len, records)), stored
    return seconds, cpu


def sqlite_http(bodies: list[bytes], points: int, writers: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        with Server(f"sqlite+aiosqlite:///{path}", Path(tmp)) as server:
            seconds, cpu = asyncio.run(http_ingest(server.base_url, bodies, writers, server.cpu_seconds))
        conn = sqlite3.connect(path)
        stored = conn.execute("SELECT count(*) FROM metric_points").fetchone()[0] - 1  # the warm-up point
        conn.close()
    assert stored == points, (stored, points)
    return seconds, cpu


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--sqlite-points", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--connections",
        type=int,
        default=2,
        help="raw COPY connections = concurrent HTTP writers (Postgres); HTTP writers (SQLite)",
    )
    ap.add_argument("--only", choices=("pg", "sqlite"), default=None)
    args = ap.parse_args()
    n = args.connections
    print(f"load before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores")

    if args.only != "sqlite":
        bodies, records = make_batches(args.points, args.batch)
        ratios, cpus = [], []
        for r in range(args.rounds):
            raw_s = pg_raw(args.pg, records, n)
            http_s, app_cpu = pg_http(args.pg, bodies, args.points, n)
            ratios.append(raw_s / http_s)
            cpus.append(app_cpu / args.points * 1e6)
            print(
                f"  pg round {r + 1}: raw COPY {args.points / raw_s:,.0f} rows/s, HTTP "
                f"{args.points / http_s:,.0f} "
                f"points/s (app CPU {cpus[-1]:.1f} us/point) -> ratio {ratios[-1]:.2f}",
                flush=True,
            )
        print(
            f"postgres, {args.points:,} points, {n} COPY connections vs {n} HTTP writers, {args.rounds} "
            "paired "
            f"rounds: HTTP/raw ratio {spread(ratios)} (target >= 0.8); app CPU us/point {spread(cpus)}"
        )

    if args.only != "pg":
        bodies, records = make_batches(args.sqlite_points, args.batch)
        ratios, app_cpus, raw_cpus = [], [], []
        for r in range(args.rounds):
            raw_s, raw_cpu = sqlite_raw(records)
            http_s, app_cpu = sqlite_http(bodies, args.sqlite_points, n)
            ratios.append(raw_s / http_s)
            raw_cpus.append(raw_cpu / args.sqlite_points * 1e6)
            app_cpus.append(app_cpu / args.sqlite_points * 1e6)
            print(
                f"  sqlite round {r + 1}: raw executemany {args.sqlite_points / raw_s:,.0f} rows/s "
                f"({raw_cpus[-1]:.1f} us CPU/row), HTTP {args.sqlite_points / http_s:,.0f} points/s "
                f"({app_cpus[-1]:.1f} us app CPU/point) -> ratio {ratios[-1]:.2f}",
                flush=True,
            )
        print(
            f"sqlite, {args.sqlite_points:,} points, raw executemany (1 connection) vs {n} HTTP writers, "
            f"{args.rounds} paired rounds: HTTP/raw ratio {spread(ratios)} (target >= 0.6); "
            f"CPU us/point app {spread(app_cpus)} vs raw {spread(raw_cpus)}"
        )
    print(f"load after: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
