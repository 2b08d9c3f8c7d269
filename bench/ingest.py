"""Metric ingest through the real app (uvicorn, auth, rate limiter, validation, rollups, series
upsert) against the raw driver writing the same rows into the same table, in PAIRED rounds.

    .venv/bin/python bench/ingest.py [--pg postgresql://postgres@127.0.0.1:5432/test] [--points 1000000]
                                     [--sqlite-points 200000] [--rounds 3] [--connections 2]
                                     [--shapes points,series] [--series-times epoch|iso]
                                     [--app-dir /path/to/another/checkout]

Postgres: each round runs raw asyncpg COPY into ``metric_points`` of a fresh migrated database over
``--connections`` connections, then the same points over HTTP (``/api/v1/metrics/batch``, 10k-point
batches) from as many concurrent writers into another fresh database and server. SQLite: raw
``sqlite3`` executemany of the same rows (same table, same PRAGMAs, one connection: SQLite has one
writer) vs HTTP from ``--connections`` writers, each on a fresh database file. The machine is
shared and noisy, so each round is paired (raw, HTTP, raw) and its ratio compares the HTTP run with
the mean of the raw runs made just before and after it; the median ratio and its spread (min-max
over rounds) are the figures. Both body shapes carry the same points and are measured against the
same raw runs: ``{"points": [...]}`` (one object per point, ISO 8601 timestamps) and
``{"series": [...]}`` (each batch's 100 series with their timestamps and values as arrays; the
timestamps as epoch seconds, or ``--series-times iso`` for the same ISO 8601 texts). A round is
raw, HTTP, raw, HTTP, raw (the shapes' order alternates between rounds), each HTTP run held against
the raw runs on either side of it. ``--shapes points`` for a tree without the series shape.
Targets: Postgres HTTP >= 0.8x raw COPY, SQLite HTTP >= 0.6x raw executemany.

Each round also splits the CPU per point by process: the server (with SQLite inside it), the
Postgres backends of the run's database (the server's pool, background loops included, or the raw
COPY connections) and this process as the client (aiohttp for HTTP; for raw COPY, asyncpg's record
encoding). On a machine busier than its cores the throughput ratio tends to the CPU ratio (raw
total / HTTP total), which is printed too; the client's share shows whether the bench itself limits
the HTTP rounds. The server's CPU is split further into its event-loop thread (the framework and
the request's Python: decoding, row building, deltas) and the rest (on SQLite, mostly the driver
threads running and binding the statements: the part to hold against raw executemany's CPU).
``--app-dir`` runs the server from another checkout (before/after in one session; that tree migrates
the HTTP rounds' databases itself, so trees with different migrations compare).
The server's CPU and its backends' are read once its compaction loop has merged every rollup delta
the run wrote (it runs every 15 s, so a short run would otherwise leave that work out); the seconds
stop at the last batch. The backends' CPU is also printed split at the last batch: the batches'
own statements before it, compaction and the background loops after it.

The client authenticates as an ``ingest``-role user, so every batch pays for auth, the "metrics"
rate-limit group, validation, the points, rollup deltas and the series upsert, all in one transaction.
Scratch databases and directories are removed at the end of each run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
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
from bench._server import PASSWORD, Server, fresh_pg_database, migrated_pg_database, sa_url

SERIES = 100
POINT_COLUMNS = ("component", "metric_name", "series_key", "labels", "value", "ts")
SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy's SQLite DateTime stores a (naive UTC) timestamp
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    """CPU seconds of this process (the bench client) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    """CPU seconds so far of a single-threaded process (a Postgres backend), to the nanosecond
    (``schedstat``; clock ticks where it is missing); 0 once it is gone."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except OSError:
        pass
    return process_cpu_stat(Path(f"/proc/{pid}/stat"))


def main_thread_cpu(pid: int) -> float:
    """CPU seconds so far of a process's main thread: for the server, its event loop (the framework
    and every line of Python a request runs there). The rest of the server's CPU is its other
    threads: SQLite's driver threads (the statements, and binding their rows), the sketch merges."""
    try:
        return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[0]) / 1e9
    except OSError:
        return process_cpu_stat(Path(f"/proc/{pid}/task/{pid}/stat"))


def process_cpu_stat(stat: Path) -> float:
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def backends_cpu(dsn: str) -> dict[int, float]:
    """CPU seconds so far of every other backend connected to ``dsn``'s database (by pid)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return {r["pid"]: process_cpu(r["pid"]) for r in rows}


def backends_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU the backends spent between two ``backends_cpu`` readings (new ones: all of theirs)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def make_batches(
    points: int, batch: int, series_times: str = "epoch"
) -> tuple[dict[str, list[bytes]], list[list[tuple]]]:
    """Bodies for HTTP in each shape and the same points as table rows: 100 series, 1
    point/series/second. The point shape's timestamps are ISO 8601 texts; the series shape's epoch
    seconds (whole: the same instants) or, with ``series_times="iso"``, the same texts."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=points // SERIES + 60)
    bodies: dict[str, list[bytes]] = {"points": [], "series": []}
    records = []
    labels = [{"host": f"h{s % 10}", "stage": f"s{s // 10}"} for s in range(SERIES)]
    keys = [orjson.dumps(lab, option=orjson.OPT_SORT_KEYS).decode() for lab in labels]
    for b in range(0, points, batch):
        items, recs = [], []
        entries = [
            {
                "component": f"comp{s % 10}",
                "metric_name": "rows_processed",
                "labels": labels[s],
                "timestamps": [],
                "values": [],
            }
            for s in range(SERIES)
        ]
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
            entries[s]["timestamps"].append(ts.isoformat() if series_times == "iso" else int(ts.timestamp()))
            entries[s]["values"].append(value)
            recs.append((f"comp{s % 10}", "rows_processed", keys[s], keys[s], value, ts))
        bodies["points"].append(orjson.dumps({"points": items}))
        bodies["series"].append(orjson.dumps({"series": [e for e in entries if e["values"]]}))
        records.append(recs)
    return bodies, records


WARMUP = orjson.dumps({"points": [{"component": "warmup", "metric_name": "warmup", "value": 1.0}]})


async def compacted(pending) -> None:
    """Wait until ``pending()`` (the rollup deltas not compacted yet) is 0."""
    while await pending():
        await asyncio.sleep(0.5)


def pg_pending(dsn: str):
    async def pending() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval("SELECT count(*) FROM metric_rollups WHERE NOT compacted")
        finally:
            await conn.close()

    return pending


def sqlite_pending(path: Path):
    async def pending() -> int:
        conn = sqlite3.connect(path, timeout=30)
        try:
            return conn.execute("SELECT count(*) FROM metric_rollups WHERE NOT compacted").fetchone()[0]
        finally:
            conn.close()

    return pending


async def http_ingest(
    base_url: str,
    bodies: list[bytes],
    concurrency: int,
    cpu_seconds,
    pending,
    dsn: str | None = None,
    loop_cpu=lambda: 0.0,
) -> tuple[float, float, float, float, float]:
    """(seconds, server CPU, database backends' CPU (Postgres ``dsn``, else 0), client CPU, the
    server's event-loop thread's CPU (``loop_cpu``, part of the server CPU)) for
    ``bodies`` from ``concurrency`` writers; the CPU until ``pending()`` (the server's compaction
    backlog) is 0. The token and one one-point batch come first, untimed: a
    long-running server has long paid for its first request (lazy imports, route and schema set-up)
    and for the login's password hash."""
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
        db0 = await backends_cpu(dsn) if dsn else {}
        t0, cpu0, own0, loop0 = time.perf_counter(), cpu_seconds(), own_cpu(), loop_cpu()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - t0
        db_batches = backends_used(db0, await backends_cpu(dsn)) if dsn else 0.0
        # The rollup deltas these batches wrote are merged by the server's compaction loop (every
        # 15 s), often after the last batch: the CPU figures count that work too, until no delta is
        # pending (the seconds, and so the throughput, stop at the last batch).
        await compacted(pending)
        cpu, own, loop = cpu_seconds() - cpu0, own_cpu() - own0, loop_cpu() - loop0
        db = backends_used(db0, await backends_cpu(dsn)) if dsn else 0.0
        if dsn:
            print(
                f"    postgres CPU: {db_batches:.2f} s until the last batch, "
                f"{db - db_batches:.2f} s after it (compaction, background loops)",
                flush=True,
            )
        return seconds, cpu, db, own, loop


# --- Postgres ----------------------------------------------------------------------------------
async def _pg_copy(dsn: str, records: list[list[tuple]], connections: int) -> tuple[float, float, float]:
    """(seconds, backends' CPU, client CPU) of the COPY rounds."""
    conns = [await asyncpg.connect(dsn) for _ in range(connections)]
    pids = [c.get_server_pid() for c in conns]

    async def one(conn, chunks):
        for recs in chunks:
            await conn.copy_records_to_table("metric_points", columns=POINT_COLUMNS, records=recs)

    db0 = sum(map(process_cpu, pids))
    t0, own0 = time.perf_counter(), own_cpu()
    await asyncio.gather(*(one(c, records[i::connections]) for i, c in enumerate(conns)))
    elapsed, own = time.perf_counter() - t0, own_cpu() - own0
    db = sum(map(process_cpu, pids)) - db0
    for c in conns:
        await c.close()
    return elapsed, db, own


async def _pg_count(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT count(*) FROM metric_points")
    finally:
        await conn.close()


def pg_raw(base: str, records: list[list[tuple]], connections: int) -> tuple[float, float, float]:
    with migrated_pg_database(base) as dsn:
        return asyncio.run(_pg_copy(dsn, records, connections))


def pg_http(
    base: str, bodies: list[bytes], points: int, writers: int, app_dir: Path
) -> tuple[float, float, float, float, float]:
    """(seconds, server CPU, backends' CPU, client CPU, server event-loop CPU) of HTTP ingest into a
    fresh database through a fresh server. The server's tree migrates the database (``--app-dir``: a
    tree with other migrations than this one refuses a schema it does not know)."""
    with fresh_pg_database(base) as dsn:
        with (
            tempfile.TemporaryDirectory() as tmp,
            Server(sa_url(dsn), Path(tmp), app_dir=app_dir) as server,
        ):
            run = asyncio.run(
                http_ingest(
                    server.base_url,
                    bodies,
                    writers,
                    server.cpu_seconds,
                    pg_pending(dsn),
                    dsn,
                    lambda: main_thread_cpu(server.proc.pid),
                )
            )
        stored = asyncio.run(_pg_count(dsn)) - 1  # the warm-up point
    assert stored == points, (stored, points)
    return run


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


def sqlite_http(
    bodies: list[bytes], points: int, writers: int, app_dir: Path
) -> tuple[float, float, float, float]:
    """(seconds, server CPU (SQLite included), client CPU, the server's event-loop thread's CPU)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        with Server(f"sqlite+aiosqlite:///{path}", Path(tmp), app_dir=app_dir) as server:
            seconds, cpu, _, own, loop = asyncio.run(
                http_ingest(
                    server.base_url,
                    bodies,
                    writers,
                    server.cpu_seconds,
                    sqlite_pending(path),
                    loop_cpu=lambda: main_thread_cpu(server.proc.pid),
                )
            )
        conn = sqlite3.connect(path)
        stored = conn.execute("SELECT count(*) FROM metric_points").fetchone()[0] - 1  # the warm-up point
        conn.close()
    assert stored == points, (stored, points)
    return seconds, cpu, own, loop


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})"


def us(seconds: float, points: int) -> float:
    return seconds / points * 1e6


def interleaved(shapes: list[str], rounds: int):
    """Per round, the shapes in the order measured: alternated between rounds, so that neither
    always runs first."""
    for r in range(rounds):
        yield r, shapes if r % 2 == 0 else shapes[::-1]


def pg_rounds(args, shapes: list[str], n: int, app_dir: Path) -> None:
    points = args.points
    bodies, records = make_batches(points, args.batch, args.series_times)
    figures = {shape: {k: [] for k in ("ratio", "cpu", "app", "loop", "db", "client")} for shape in shapes}
    for r, order in interleaved(shapes, args.rounds):
        raw_before = pg_raw(args.pg, records, n)
        for shape in order:
            http_s, app_cpu, db_cpu, client, loop_cpu = pg_http(args.pg, bodies[shape], points, n, app_dir)
            raw_after = pg_raw(args.pg, records, n)
            (raw_s, raw_db, raw_client), (raw_s2, raw_db2, raw_client2) = raw_before, raw_after
            raw_cpu = (raw_db + raw_client + raw_db2 + raw_client2) / 2
            f = figures[shape]
            f["ratio"].append((raw_s + raw_s2) / 2 / http_s)
            f["cpu"].append(raw_cpu / (app_cpu + db_cpu + client))
            f["app"].append(us(app_cpu, points))
            f["loop"].append(us(loop_cpu, points))
            f["db"].append(us(db_cpu, points))
            f["client"].append(us(client, points))
            print(
                f"  pg round {r + 1} {shape}: raw COPY {points / raw_s:,.0f} / {points / raw_s2:,.0f} rows/s "
                f"(CPU us/row: postgres {us(raw_db + raw_db2, 2 * points):.2f}, client "
                f"{us(raw_client + raw_client2, 2 * points):.2f}), HTTP {points / http_s:,.0f} points/s "
                f"(CPU us/point: app {f['app'][-1]:.2f} (event loop {f['loop'][-1]:.2f}), postgres "
                f"{f['db'][-1]:.2f}, client {f['client'][-1]:.2f}) -> ratio {f['ratio'][-1]:.2f}, CPU ratio "
                f"{f['cpu'][-1]:.2f}; load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
            raw_before = raw_after
    for shape, f in figures.items():
        print(
            f"postgres {shape}, {points:,} points, {n} COPY connections vs {n} HTTP writers, {args.rounds} "
            f"paired rounds: HTTP/raw ratio {spread(f['ratio'])} (target >= 0.8); CPU ratio "
            f"{spread(f['cpu'])}; HTTP CPU us/point: app {spread(f['app'])} (event loop "
            f"{spread(f['loop'])}), postgres {spread(f['db'])}, client {spread(f['client'])}"
        )


def sqlite_rounds(args, shapes: list[str], n: int, app_dir: Path) -> None:
    points = args.sqlite_points
    bodies, records = make_batches(points, args.batch, args.series_times)
    figures = {shape: {k: [] for k in ("ratio", "app", "loop", "raw", "client")} for shape in shapes}
    for r, order in interleaved(shapes, args.rounds):
        raw_before = sqlite_raw(records)
        for shape in order:
            http_s, app_cpu, client, loop_cpu = sqlite_http(bodies[shape], points, n, app_dir)
            raw_after = sqlite_raw(records)
            (raw_s, raw_cpu), (raw_s2, raw_cpu2) = raw_before, raw_after
            f = figures[shape]
            f["ratio"].append((raw_s + raw_s2) / 2 / http_s)
            f["raw"].append(us(raw_cpu + raw_cpu2, 2 * points))
            f["app"].append(us(app_cpu, points))
            f["loop"].append(us(loop_cpu, points))
            f["client"].append(us(client, points))
            print(
                f"  sqlite round {r + 1} {shape}: raw executemany {points / raw_s:,.0f} / "
                f"{points / raw_s2:,.0f} rows/s ({f['raw'][-1]:.2f} us CPU/row), HTTP "
                f"{points / http_s:,.0f} points/s (CPU us/point: app {f['app'][-1]:.2f} (event loop "
                f"{f['loop'][-1]:.2f}, other threads {f['app'][-1] - f['loop'][-1]:.2f}), client "
                f"{f['client'][-1]:.2f}) -> ratio {f['ratio'][-1]:.2f}; load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
            raw_before = raw_after
    for shape, f in figures.items():
        print(
            f"sqlite {shape}, {points:,} points, raw executemany (1 connection) vs {n} HTTP writers, "
            f"{args.rounds} paired rounds: HTTP/raw ratio {spread(f['ratio'])} (target >= 0.6); "
            f"CPU us/point app {spread(f['app'])} (event loop {spread(f['loop'])}) vs raw "
            f"{spread(f['raw'])}; client {spread(f['client'])}"
        )


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
    ap.add_argument("--app-dir", default=str(Path(__file__).resolve().parent.parent), help="server's tree")
    ap.add_argument("--shapes", default="points,series", help="body shapes to measure (comma-separated)")
    ap.add_argument("--series-times", choices=("epoch", "iso"), default="epoch")
    args = ap.parse_args()
    n, app_dir = args.connections, Path(args.app_dir).resolve()
    shapes = [shape for shape in args.shapes.split(",") if shape]
    print(
        f"load before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores; app {app_dir}; "
        f"shapes {', '.join(shapes)} (series timestamps: {args.series_times})"
    )

    if args.only != "sqlite":
        pg_rounds(args, shapes, n, app_dir)
    if args.only != "pg":
        sqlite_rounds(args, shapes, n, app_dir)
    print(f"load after: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
