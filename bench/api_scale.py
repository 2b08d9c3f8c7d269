"""API cost against fleet size: the same requests on a guard with a small fleet and on one with a
large fleet, both real `uvicorn` servers running at the same time, requests alternated between them
round by round (so drift of the shared machine hits both alike).

    .venv/bin/python bench/api_scale.py [--small 100] [--large 20000] [--rounds 5] [--requests 40]
                                        [--pg postgresql://postgres@127.0.0.1:5432/test]
                                        [--variant-env PIPELINE_X=1 ...] [--variant-sql "ALTER ..." ...]

Per endpoint: p50/p99 latency of sequential requests (one client connection), the server's CPU
per request and the body size, for each fleet; the headline is p99(large) / p99(small), target
<= 2. The components carry a heartbeat check with a one-hour interval, so the scheduler holds them
all (the /health map and /status see every one) without probing during the run; 2 % of them are
unhealthy (a fifth of those critical components), the rest healthy.
Rate limiting is off in both servers (the bench would otherwise measure 429s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from bench._server import PASSWORD, Server, migrated_pg_database, sa_url

ENDPOINTS = ("/api/v1/components?limit=50", "/api/v1/status", "/health")
UNHEALTHY_EVERY = 50  # 2 % of the fleet


async def seed(database_url: str, n: int) -> None:
    """n components with a state row each, written in bulk, plus a viewer user."""
    from sqlalchemy import insert

    from app.auth.tokens import PasswordHasher
    from app.config.settings import Settings
    from app.db.engine import create_engine, create_sessionmaker
    from app.db.models import Component, ComponentState, User
    from app.db.session import session_scope

    engine = create_engine(Settings(database_url=database_url, env="test"))
    now = datetime.now(UTC)
    check = {"kind": "heartbeat", "period_s": 86400, "grace_s": 3600, "interval": 3600}
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            session.add(
                User(username="bench-viewer", password_hash=PasswordHasher().hash(PASSWORD), role="viewer")
            )
            for start in range(0, n, 2000):
                ids = range(start + 1, min(n, start + 2000) + 1)
                await session.execute(
                    insert(Component.__table__),
                    [
                        {
                            "id": i,
                            "name": f"svc-{i:06d}",
                            "description": "",
                            "critical": i % (UNHEALTHY_EVERY * 5) == 0,
                            "labels": {"region": f"r{i % 4}", "team": f"t{i % 10}"},
                            "region": f"r{i % 4}",
                            "check": check,
                            "recovery": None,
                            "enabled": True,
                            "source": "api",
                            "version": 1,
                            "created_at": now,
                            "updated_at": now,
                        }
                        for i in ids
                    ],
                )
                await session.execute(
                    insert(ComponentState.__table__),
                    [
                        {
                            "component_id": i,
                            "status": "critical" if i % UNHEALTHY_EVERY == 0 else "healthy",
                            "status_since": now,
                            "last_check_at": now,
                            "last_outcome": "up",
                            "consecutive_failures": 0,
                            "consecutive_successes": 1,
                            "recent_outcomes": "u",
                            "updated_at": now,
                        }
                        for i in ids
                    ],
                )
    finally:
        await engine.dispose()


async def run_sql(database_url: str, statements: list[str]) -> None:
    from sqlalchemy import text

    from app.config.settings import Settings
    from app.db.engine import create_engine, create_sessionmaker
    from app.db.session import session_scope

    engine = create_engine(Settings(database_url=database_url, env="test"))
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            for statement in statements:
                await session.execute(text(statement))
    finally:
        await engine.dispose()


async def login(http: aiohttp.ClientSession, base: str) -> dict[str, str]:
    async with http.post(
        f"{base}/api/v1/auth/token", data={"username": "bench-viewer", "password": PASSWORD}
    ) as r:
        return {"Authorization": f"Bearer {(await r.json())['access_token']}"}


async def wait_loaded(http: aiohttp.ClientSession, base: str, headers: dict[str, str], n: int) -> None:
    """Until the scheduler holds the whole fleet (its first refresh reads every component)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        async with http.get(f"{base}/api/v1/status/detailed", headers=headers) as r:
            body = await r.json()
        if (body.get("scheduler") or {}).get("components_scheduled") == n:
            return
        await asyncio.sleep(1)
    raise RuntimeError(f"the scheduler did not load {n} components")


async def one_round(
    http: aiohttp.ClientSession, server: Server, headers: dict[str, str], path: str, requests: int
) -> tuple[list[float], float, int]:
    latencies, size = [], 0
    cpu0 = server.cpu_seconds()
    for _ in range(requests):
        t0 = time.perf_counter()
        async with http.get(server.base_url + path, headers=headers) as r:
            body = await r.read()
            if r.status != 200:
                raise RuntimeError(f"{path}: {r.status} {body[:200]!r}")
        latencies.append(time.perf_counter() - t0)
        size = len(body)
    return latencies, (server.cpu_seconds() - cpu0) / requests, size


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


async def measure(servers: dict[str, tuple[int, Server]], rounds: int, requests: int) -> dict:
    out: dict = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as http:
        headers = {}
        for label, (n, server) in servers.items():
            headers[label] = await login(http, server.base_url)
            await wait_loaded(http, server.base_url, headers[label], n)
        for path in ENDPOINTS:
            for label, (_n, server) in servers.items():  # warm-up
                await one_round(http, server, headers[label], path, 5)
            per = {label: {"lat": [], "cpu": [], "p99": []} for label in servers}
            for _ in range(rounds):
                for label, (_n, server) in servers.items():
                    lat, cpu, size = await one_round(http, server, headers[label], path, requests)
                    per[label]["lat"] += lat
                    per[label]["cpu"].append(cpu)
                    per[label]["p99"].append(pct(lat, 0.99))
                    per[label]["size"] = size
            out[path] = per
    return out


def ratio_line(path: str, name: str, large: dict, small: dict, target: str) -> str:
    ratio = pct(large["lat"], 0.99) / pct(small["lat"], 0.99)
    rounds = sorted(lg / sm for lg, sm in zip(large["p99"], small["p99"], strict=True))
    return (
        f"  {path:32s} p99 {name} = {ratio:.2f}  (per round median "
        f"{statistics.median(rounds):.2f}, {rounds[0]:.2f}-{rounds[-1]:.2f}{target})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--pg", help="postgresql://... (a scratch database per fleet is made beside it)")
    parser.add_argument(
        "--variant-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="also serve the large fleet with these environment settings (a third server, alternated "
        "with the other two): e.g. what a suspect costs, measured against the same fleet without it",
    )
    parser.add_argument(
        "--variant-sql",
        action="append",
        default=[],
        help="also serve the large fleet from a database this statement ran on after its migration (a "
        "third server, as --variant-env; both may be given), e.g. a migration's setting undone",
    )
    args = parser.parse_args()
    env = {"PIPELINE_SECURITY__RATE_LIMITING__ENABLED": "false"}
    variant = dict(kv.split("=", 1) for kv in args.variant_env)
    fleets = [("small", args.small, env), ("large", args.large, env)]
    if variant or args.variant_sql:
        fleets.append(("variant", args.large, {**env, **variant}))
    print(f"load before: {Path('/proc/loadavg').read_text().split()[:3]}")
    with tempfile.TemporaryDirectory(prefix="pg-bench-api-") as tmp, contextlib.ExitStack() as stack:
        servers: dict[str, tuple[int, Server]] = {}
        for label, n, server_env in fleets:
            if args.pg:
                url = sa_url(stack.enter_context(migrated_pg_database(args.pg)))
            else:
                url = f"sqlite+aiosqlite:///{tmp}/fleet-{label}.db"
            data_dir = Path(tmp) / f"var-{label}"
            data_dir.mkdir()
            from app.db.migrate import upgrade_sync

            upgrade_sync(url)
            if label == "variant" and args.variant_sql:
                asyncio.run(run_sql(url, args.variant_sql))
            asyncio.run(seed(url, n))
            servers[label] = (n, stack.enter_context(Server(url, data_dir, env=server_env)))
        results = asyncio.run(measure(servers, args.rounds, args.requests))
    print(f"load after: {Path('/proc/loadavg').read_text().split()[:3]}  ({os.cpu_count()} cores)")
    dialect = "Postgres" if args.pg else "SQLite"
    print(f"{dialect}; {args.rounds} rounds x {args.requests} sequential requests per fleet, alternated")
    if len(fleets) == 3:
        print(f"  variant: n={args.large} with {' '.join([*args.variant_env, *args.variant_sql])}")
    for path, per in results.items():
        for label, n, _env in fleets:
            r = per[label]
            print(
                f"  {path:32s} {label:7s} n={n:<6d} p50 {pct(r['lat'], 0.5) * 1000:7.2f} ms  p99 "
                f"{pct(r['lat'], 0.99) * 1000:7.2f} ms"
                f"  (p99 per round {min(r['p99']) * 1000:.1f}-{max(r['p99']) * 1000:.1f})"
                f"  cpu/request {statistics.median(r['cpu']) * 1000:6.2f} ms  body {r['size']:,} B"
            )
        print(ratio_line(path, f"{args.large}/{args.small}", per["large"], per["small"], "; target <= 2"))
        if len(fleets) == 3:
            print(ratio_line(path, "variant/large", per["variant"], per["large"], ""))


if __name__ == "__main__":
    main()
