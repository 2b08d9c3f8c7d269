"""HTTP batch ingest into Postgres through the real app vs a raw 2-connection asyncpg COPY of the
same points into an identical table, in the same run; also the SQLite HTTP rate.

    .venv/bin/python bench/ingest.py [--pg postgresql://postgres@127.0.0.1:5432/test] [--points 1000000]
                                     [--concurrency 8,4] [--workers 1]

The headline is 8 concurrent writers (a pipeline fleet pushes from many jobs at once; the app
overlaps one request's parsing with another's COPY); 4 writers is printed beside it. Each HTTP run
gets a fresh database and server, so neither inherits the other's table.

The client authenticates as an ``ingest``-role user (created in the fresh database), so every batch
goes through auth, the rate limiter's "metrics" group, validation, COPY, rollups and the series upsert.
Target: HTTP >= 0.6x raw COPY.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import asyncpg
import orjson

from bench._server import PASSWORD, Server, migrated_pg_database, sa_url

SERIES = 100


def make_batches(points: int, batch: int) -> tuple[list[bytes], list[list[tuple]]]:
    """Bodies for HTTP and the same points as COPY records: 100 series, 1 point/series/second."""
    start = datetime.now(UTC) - timedelta(seconds=points // SERIES + 60)
    bodies, records = [], []
    labels = [{"host": f"h{s % 10}", "stage": f"s{s // 10}"} for s in range(SERIES)]
    keys = [orjson.dumps(lab, option=orjson.OPT_SORT_KEYS).decode() for lab in labels]
    for b in range(0, points, batch):
        items, recs = [], []
        for i in range(b, min(b + batch, points)):
            s = i % SERIES
            ts = start + timedelta(seconds=i // SERIES)
            value = float((i * 7919) % 1000) / 10.0
            items.append({"component": f"comp{s % 10}", "metric_name": "rows_processed", "value": value,
                          "labels": labels[s], "timestamp": ts.isoformat()})
            recs.append((f"comp{s % 10}", "rows_processed", keys[s], keys[s], value, ts))
        bodies.append(orjson.dumps({"points": items}))
        records.append(recs)
    return bodies, records


async def http_ingest(base_url: str, bodies: list[bytes], concurrency: int) -> float:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:
        async with http.post(f"{base_url}/api/v1/auth/token",
                             data={"username": "bench-ingest", "password": PASSWORD}) as r:
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

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - t0


async def raw_copy(dsn: str, records: list[list[tuple]]) -> float:
    setup = await asyncpg.connect(dsn)
    await setup.execute("CREATE TABLE raw_points (LIKE metric_points INCLUDING ALL)")
    await setup.close()
    conns = [await asyncpg.connect(dsn) for _ in range(2)]
    cols = ("component", "metric_name", "series_key", "labels", "value", "ts")

    async def one(conn, chunks):
        for recs in chunks:
            await conn.copy_records_to_table("raw_points", columns=cols, records=recs)

    t0 = time.perf_counter()
    await asyncio.gather(one(conns[0], records[0::2]), one(conns[1], records[1::2]))
    elapsed = time.perf_counter() - t0
    for c in conns:
        await c.close()
    return elapsed


async def count(dsn: str, table: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(f"SELECT count(*) FROM {table}")
    finally:
        await conn.close()


async def pending_deltas(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT count(*) FROM metric_rollups WHERE NOT compacted")
    finally:
        await conn.close()


def http_run(base: str, bodies: list[bytes], points: int, concurrency: int, workers: int,
             *, until_compacted: bool = False) -> tuple[float, float, float | None]:
    """HTTP ingest into a fresh database through a fresh server: (seconds, app CPU seconds, and the
    app CPU seconds the rollup compactor then needs to merge every delta, when asked)."""
    compaction_cpu = None
    with migrated_pg_database(base) as dsn:
        with tempfile.TemporaryDirectory() as tmp, Server(sa_url(dsn), Path(tmp), workers) as server:
            cpu0 = server.cpu_seconds()
            http_s = asyncio.run(http_ingest(server.base_url, bodies, concurrency))
            app_cpu = server.cpu_seconds() - cpu0
            if until_compacted:  # the compactor loop runs every 15 s; wait for it to drain the backlog
                cpu1, deadline = server.cpu_seconds(), time.monotonic() + 180
                while asyncio.run(pending_deltas(dsn)) and time.monotonic() < deadline:
                    time.sleep(0.5)
                compaction_cpu = server.cpu_seconds() - cpu1
        stored = asyncio.run(count(dsn, "metric_points"))
        assert stored == points, (stored, points)
    return http_s, app_cpu, compaction_cpu


def raw_run(base: str, records: list[list[tuple]]) -> float:
    with migrated_pg_database(base) as dsn:
        return asyncio.run(raw_copy(dsn, records))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--sqlite-points", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--concurrency", default="8,4",
                    help="concurrent HTTP writers, comma-separated; the first is the headline figure")
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    args = ap.parse_args()
    writers = [int(c) for c in args.concurrency.split(",")]

    bodies, records = make_batches(args.points, args.batch)
    # Raw COPY before and after the HTTP runs (each into a fresh database with the real schema): this
    # machine is shared and noisy, so the baseline is the mean of the two.
    copy_before = raw_run(args.pg, records)
    http = {c: http_run(args.pg, bodies, args.points, c, args.workers, until_compacted=c == writers[0])
            for c in writers}
    copy_after = raw_run(args.pg, records)
    copy_s = (copy_before + copy_after) / 2
    copy_rate = args.points / copy_s
    print(f"raw COPY before/after the HTTP runs: {args.points / copy_before:,.0f} / {args.points / copy_after:,.0f} rows/s")
    print(f"postgres raw asyncpg COPY, 2 connections, same points, identical table (mean): "
          f"{copy_rate:,.0f} rows/s ({copy_s:.1f}s)")
    for c, (http_s, app_cpu, compaction_cpu) in http.items():
        http_rate = args.points / http_s
        print(f"postgres HTTP ingest (real app, uvloop/httptools, {args.workers} worker(s), {c} concurrent writers, "
              f"{args.batch}-point batches): {http_rate:,.0f} points/s ({args.points:,} in {http_s:.1f}s); "
              f"app CPU {app_cpu / args.points * 1e6:.1f} us/point; ratio HTTP/raw = {http_rate / copy_rate:.2f}")
        if compaction_cpu is not None:
            print(f"  then the rollup compactor merged every delta with {compaction_cpu / args.points * 1e6:.1f} us/point "
                  f"of app CPU (idle server included), off the request path")
    headline = args.points / http[writers[0]][0] / copy_rate
    print(f"ratio HTTP/raw = {headline:.2f} with {writers[0]} writers  (target >= 0.6)")

    sq_bodies = bodies[: max(1, args.sqlite_points // args.batch)]
    with tempfile.TemporaryDirectory() as tmp, Server(f"sqlite+aiosqlite:///{tmp}/bench.db", Path(tmp)) as server:
        sq_s = asyncio.run(http_ingest(server.base_url, sq_bodies, 2))
    sq_points = sum(1 for _ in sq_bodies) * args.batch
    print(f"sqlite HTTP ingest: {sq_points / sq_s:,.0f} points/s ({sq_points:,} in {sq_s:.1f}s)")


if __name__ == "__main__":
    main()
