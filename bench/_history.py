"""Stored history for the probe benchmark: what a guard running the fleet for a day holds.

With the shipped defaults (`results_retention` 24 h, `rollup_retention` 30 d) a guard that has checked
N components every `interval` for 24 h holds the raw results of the last 24 h and one rollup row per
component and completed hour. At 20,000 components @ 10 s that is 172.8M raw rows (~25 GB in SQLite):
more than a benchmark can write on a shared machine. What the running process touches of it:

- the hourly rollup reads the last completed hour of raw results (one hour, whatever is kept),
- retention deletes raw results once they are 24 h old, in bounded batches,
- the API pages through history (bounded pages).

So the seed is the rollups of the `hours` before the last `raw_hours`, and the raw results of the last
`raw_hours` (the last completed hour not rolled up yet: the guard rolls it up while it is measured),
generated inside the database (a recursive CTE on SQLite, generate_series on Postgres). The raw hours
left out are older rows no part of the process reads until retention deletes them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import asyncpg


@dataclass
class Seeded:
    raw_results: int
    rollups: int
    seconds: float
    max_result_id: int


def plan(now: float, interval: float, hours: float, raw_hours: float) -> tuple[int, int, int, int]:
    """(first raw second, raw steps, first rollup hour (epoch s), rollup hours)."""
    step = max(1, int(interval))
    raw_start = int(now - raw_hours * 3600)
    steps = max(0, math.floor((now - 1 - raw_start - (step - 1)) / step))
    # Hours before the raw window's first hour are rolled up (as the guard would have, every hour).
    first_raw_hour = raw_start - raw_start % 3600
    rollup_hours = max(0, int(hours - raw_hours))
    return raw_start, steps, first_raw_hour - rollup_hours * 3600, rollup_hours


SQLITE_RAW = """
WITH RECURSIVE step(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM step WHERE k < :steps - 1)
INSERT INTO check_results (component_id, observed_at, outcome, latency_ms, detail)
SELECT c.id, strftime('%Y-%m-%d %H:%M:%S', :start + k * :step + c.id % :step, 'unixepoch') || '.000000',
       'up', 0.5 + (c.id % 7) * 0.25, 'HTTP 200 in 1 ms'
FROM step, components AS c
"""
SQLITE_ROLLUPS = """
WITH RECURSIVE h(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM h WHERE k < :hours - 1)
INSERT INTO check_rollups (component_id, hour, count, failures, degraded, latency_min_ms,
                           latency_mean_ms, latency_max_ms, latency_p95_ms)
SELECT c.id, strftime('%Y-%m-%d %H:%M:%S', :first + k * 3600, 'unixepoch') || '.000000',
       3600 / :step, 0, 0, 0.5, 1.2, 4.0, 2.0
FROM h, components AS c
"""
PG_RAW = """
INSERT INTO check_results (component_id, observed_at, outcome, latency_ms, detail)
SELECT c.id, to_timestamp($1 + k * $2 + c.id % $2), 'up', 0.5 + (c.id % 7) * 0.25, 'HTTP 200 in 1 ms'
FROM generate_series(0, $3 - 1) AS k, components AS c
"""
PG_ROLLUPS = """
INSERT INTO check_rollups (component_id, hour, count, failures, degraded, latency_min_ms,
                           latency_mean_ms, latency_max_ms, latency_p95_ms)
SELECT c.id, to_timestamp($1 + k * 3600), 3600 / $2, 0, 0, 0.5, 1.2, 4.0, 2.0
FROM generate_series(0, $3 - 1) AS k, components AS c
"""


def seed_sqlite(path: str, interval: float, hours: float, raw_hours: float) -> Seeded:
    import sqlite3

    t0 = time.monotonic()
    raw_start, steps, first_hour, rollup_hours = plan(time.time(), interval, hours, raw_hours)
    step = max(1, int(interval))
    conn = sqlite3.connect(path)
    try:
        with conn:
            if rollup_hours:
                conn.execute(SQLITE_ROLLUPS, {"hours": rollup_hours, "first": first_hour, "step": step})
            if steps:
                conn.execute(SQLITE_RAW, {"steps": steps, "start": raw_start, "step": step})
        raw = conn.execute("SELECT count(*) FROM check_results").fetchone()[0]
        rollups = conn.execute("SELECT count(*) FROM check_rollups").fetchone()[0]
        max_id = conn.execute("SELECT coalesce(max(id), 0) FROM check_results").fetchone()[0]
    finally:
        conn.close()
    return Seeded(raw, rollups, time.monotonic() - t0, max_id)


async def seed_postgres(dsn: str, interval: float, hours: float, raw_hours: float) -> Seeded:
    t0 = time.monotonic()
    raw_start, steps, first_hour, rollup_hours = plan(time.time(), interval, hours, raw_hours)
    step = max(1, int(interval))
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        async with conn.transaction():
            if rollup_hours:
                await conn.execute(PG_ROLLUPS, first_hour, step, rollup_hours)
            if steps:
                await conn.execute(PG_RAW, raw_start, step, steps)
        await conn.execute("ANALYZE check_results")
        await conn.execute("ANALYZE check_rollups")
        raw = await conn.fetchval("SELECT count(*) FROM check_results")
        rollups = await conn.fetchval("SELECT count(*) FROM check_rollups")
        max_id = await conn.fetchval("SELECT coalesce(max(id), 0) FROM check_results")
    finally:
        await conn.close()
    return Seeded(raw, rollups, time.monotonic() - t0, max_id)
