"""/health latency while unauthenticated logins arrive (each one an argon2 verify), beside /health at
rest measured in the same run, on a real ``python -m app serve`` (SQLite, rate limits off).

    .venv/bin/python bench/login_flood.py [--rounds 3] [--concurrency 8] [--baseline-root /path/to/tree]

``--baseline-root`` also serves another checkout's ``app`` (e.g. the tree before a change) and
alternates the two per round. Prints, per tree and round, /health's median and p95 at rest and during
the flood; then the median and spread over rounds of the ratio flood/rest. Note the load beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from _server import SECRET, free_port  # noqa: E402  needs the sys.path entry above

SAMPLES = 40


def serve(root: Path, workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(
        {
            "PIPELINE_ENV": "test",
            "PIPELINE_DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/guard.db",
            "PIPELINE_SECRET_KEY": SECRET,
            "PIPELINE_DATA_DIR": str(workdir / "var"),
            "PIPELINE_ADMIN_PASSWORD": "bench-password-0123456789",
            "PIPELINE_RATE_LIMIT_ENABLED": "false",
            "PIPELINE_LOG_LEVEL": "WARNING",
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(base + "/ready", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the guard in {root} did not start")
        time.sleep(0.2)


async def health_latencies(client: httpx.AsyncClient) -> list[float]:
    out = []
    for _ in range(SAMPLES):
        started = time.perf_counter()
        await client.get("/health")
        out.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.05)
    return out


async def one_round(base: str, concurrency: int) -> tuple[list[float], list[float]]:
    async with httpx.AsyncClient(
        base_url=base, timeout=60, limits=httpx.Limits(max_connections=100)
    ) as client:
        rest = await health_latencies(client)
        stop = asyncio.Event()

        async def flood() -> None:
            while not stop.is_set():
                await asyncio.gather(
                    *(
                        client.post(
                            "/api/v1/auth/token", data={"username": f"nobody-{i}", "password": "x" * 20}
                        )
                        for i in range(concurrency)
                    )
                )

        flooding = asyncio.create_task(flood())
        await asyncio.sleep(0.5)
        during = await health_latencies(client)
        stop.set()
        await flooding
    return rest, during


def p95(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.95)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--baseline-root", type=Path)
    args = parser.parse_args()
    trees = {"this tree": ROOT}
    if args.baseline_root:
        trees["baseline"] = args.baseline_root.resolve()
    ratios: dict[str, list[float]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as tmp:
        servers = {}
        try:
            for name, root in trees.items():
                workdir = Path(tmp) / name.replace(" ", "-")
                workdir.mkdir()
                servers[name] = serve(root, workdir)
            for round_no in range(1, args.rounds + 1):
                for name, (_, base) in servers.items():
                    rest, during = asyncio.run(one_round(base, args.concurrency))
                    ratio = statistics.median(during) / statistics.median(rest)
                    ratios[name].append(ratio)
                    print(
                        f"round {round_no} {name:9s} load {os.getloadavg()[0]:.1f}: /health ms at rest "
                        f"median {statistics.median(rest):.1f} p95 {p95(rest):.1f}; during "
                        f"{args.concurrency} logins at a time median {statistics.median(during):.1f} "
                        f"p95 {p95(during):.1f} "
                        f"(x{ratio:.1f})"
                    )
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=30)
    for name, values in ratios.items():
        print(
            f"{name}: /health median during the flood / at rest, over {len(values)} rounds: median "
            f"x{statistics.median(values):.1f} (x{min(values):.1f}-x{max(values):.1f})"
        )


if __name__ == "__main__":
    main()
