"""/health latency while the rate limiter's Redis hangs, is refused, or is healthy, beside the
in-memory limiter measured in the same run (a real uvicorn guard in a subprocess; 6 concurrent
clients, as a Kubernetes probe plus some API traffic would be).

    .venv/bin/python bench/ratelimit_redis.py [--requests 300] [--concurrency 6]

"hang" is a loopback server that accepts and never answers; "refused" is a port nobody listens on;
"redis" is the real Redis on 127.0.0.1:6379 (skipped when absent).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _server import Server, free_port  # noqa: E402  needs the sys.path entries above


def hanging_server() -> int:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    held: list[socket.socket] = []

    def accept_forever() -> None:
        while True:
            conn, _ = listener.accept()
            held.append(conn)  # never read, never answered, never closed

    threading.Thread(target=accept_forever, daemon=True).start()
    return listener.getsockname()[1]


def redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


async def measure(base: str, requests: int, concurrency: int) -> list[float]:
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:

        async def worker(n: int) -> None:
            for _ in range(n):
                started = time.perf_counter()
                response = await client.get("/health")
                latencies.append(time.perf_counter() - started)
                assert response.status_code in (200, 429), response.status_code

        await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
    return latencies


def run(storage: str, requests: int, concurrency: int) -> list[float]:
    os.environ["PIPELINE_RATE_LIMIT_ENABLED"] = "true"
    os.environ["PIPELINE_RATE_LIMIT_STORAGE"] = storage
    with (
        tempfile.TemporaryDirectory() as tmp,
        Server(f"sqlite+aiosqlite:///{tmp}/guard.db", Path(tmp) / "var") as server,
    ):
        asyncio.run(measure(server.base_url, concurrency * 2, concurrency))  # warm-up
        return asyncio.run(measure(server.base_url, requests, concurrency))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=6)
    args = parser.parse_args()
    scenarios = {
        "memory (baseline)": "memory://",
        "redis hanging": f"redis://127.0.0.1:{hanging_server()}/0",
        "redis refused": f"redis://127.0.0.1:{free_port()}/0",
    }
    if redis_up():
        scenarios["redis healthy"] = "redis://127.0.0.1:6379/0"
    results = {name: run(uri, args.requests, args.concurrency) for name, uri in scenarios.items()}
    base = statistics.median(results["memory (baseline)"])
    print(f"/health, {args.requests} requests, {args.concurrency} concurrent clients")
    for name, lat in results.items():
        lat = sorted(lat)
        p50, p95 = statistics.median(lat), lat[int(len(lat) * 0.95) - 1]
        print(
            f"  {name:18s} p50 {p50 * 1000:7.1f} ms  p95 {p95 * 1000:7.1f} ms  max {lat[-1] * 1000:7.1f} ms"
            f"  (p50 x{p50 / base:.2f} of baseline)"
        )


if __name__ == "__main__":
    main()
