"""The lease renewal's cost in the database against the lease table's storage, on Postgres: the
renewal statement the lease manager runs (``app/replicas/leases.py``) over N leases held by one
replica, on a copy of ``component_leases`` as migrated (fillfactor 30) and on a copy at fillfactor
100 (the baseline: the table before it was set), renewals alternated between them.

    .venv/bin/python bench/lease_storage.py [--pg postgresql://postgres@127.0.0.1:5432/test]
                                            [-n 20000] [--renewals 20] [--gap 0.5]

Per table: the renewal's wall time (median, min-max; the database's work: the process only sends two
arrays), the share of heap-only updates (no index entries written, the old version pruned in its
page) and the table's size at the end (dead versions not yet vacuumed included).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._server import migrated_pg_database


def as_asyncpg(sql: str) -> str:
    """The SQLAlchemy text() statement with asyncpg's positional parameters."""
    for i, name in enumerate((":me", ":ttl", ":ids", ":epochs"), start=1):
        sql = sql.replace(name, f"${i}")
    return sql


async def run(dsn: str, n: int, renewals: int, gap: float) -> None:
    from app.replicas.leases import _RENEW

    conn = await asyncpg.connect(dsn)
    try:
        migrated = await conn.fetchval("SELECT reloptions FROM pg_class WHERE relname = 'component_leases'")
        tables = {"baseline (fillfactor 100)": "leases_ff100", f"as migrated {migrated}": "leases_now"}
        await conn.execute("CREATE TABLE leases_ff100 (LIKE component_leases INCLUDING ALL)")
        await conn.execute("ALTER TABLE leases_ff100 SET (fillfactor = 100)")
        await conn.execute("CREATE TABLE leases_now (LIKE component_leases INCLUDING ALL)")
        for options in migrated or []:
            await conn.execute(f"ALTER TABLE leases_now SET ({options})")
        for table in tables.values():
            await conn.execute(
                f"INSERT INTO {table} (component_id, replica_id, epoch, expires_at, acquired_at) "
                "SELECT g, 'bench', 1, now() + interval '15 seconds', now() FROM generate_series(1, $1) AS g",
                n,
            )
        ids, epochs = list(range(1, n + 1)), [1] * n
        walls: dict[str, list[float]] = {label: [] for label in tables}
        order = list(tables.items())
        for k in range(renewals):
            for label, table in order if k % 2 == 0 else order[::-1]:
                sql = as_asyncpg(_RENEW.text.replace("component_leases", table))
                t0 = time.perf_counter()
                lost = await conn.fetch(sql, "bench", 15.0, ids, epochs)
                walls[label].append(time.perf_counter() - t0)
                assert not lost
            await asyncio.sleep(gap)
        await asyncio.sleep(1.0)  # the statistics are sent at most once a second
        print(f"Postgres; {n} leases, {renewals} renewals per table alternated, {gap:g} s apart")
        for label, table in tables.items():
            wall = sorted(walls[label])
            upd, hot = await conn.fetchrow(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = $1", table
            )
            size = await conn.fetchval("SELECT pg_total_relation_size(CAST($1 AS regclass))", table)
            print(
                f"  {label:32s} renewal wall {statistics.median(wall) * 1000:6.0f} ms "
                f"({wall[0] * 1000:.0f}-{wall[-1] * 1000:.0f})  heap-only {100 * hot / max(upd, 1):5.1f} % "
                f"of {upd} updates  table + indexes {size / 1e6:.1f} MB"
            )
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--pg",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="postgresql://... (a scratch database is made beside it)",
    )
    parser.add_argument("-n", type=int, default=20000)
    parser.add_argument("--renewals", type=int, default=20)
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between rounds (default 0.5)")
    args = parser.parse_args()
    print(f"load before: {Path('/proc/loadavg').read_text().split()[:3]}")
    with migrated_pg_database(args.pg) as dsn:
        asyncio.run(run(dsn, args.n, args.renewals, args.gap))
    print(f"load after: {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()
