"""GET /health of the full guard against a bare FastAPI app serving the same body, both under the
same uvicorn settings (uvloop + httptools, one worker, no access log) and the same client (wrk, one
thread, `--connections` keep-alive connections), in paired rounds bare / guard / bare / ...

    .venv/bin/python bench/health.py [--rounds 5] [--seconds 5] [--connections 16]

The guard runs with its whole middleware stack (the edge: request id, HTTP metrics, NUL and body-size
guards, rate limiter; then audit) and its background loops, on a scratch SQLite database; its
/health rate limit is raised so that every request is served (the limiter still runs). The guard's
edge answers a plain GET /health itself after those checks (app/health/liveness.py), as it does in
production; the bare app routes it through FastAPI, as any FastAPI app does. Each guard
round is divided by the mean of the bare rounds around it; the median and spread of those ratios
are the figure (target >= 0.8).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._server import ROOT, Server, free_port

BARE = """
from datetime import UTC, datetime
from fastapi import FastAPI
from pydantic import BaseModel

class HealthResponse(BaseModel):
    status: str
    timestamp: datetime
    components: dict[str, str]

app = FastAPI()

@app.get("/health", response_model=HealthResponse)
async def health() -> HealthResponse:
    return HealthResponse(status="healthy", timestamp=datetime.now(UTC), components={})
"""


class BareServer:
    def __init__(self, tmp: Path):
        self.port = free_port()
        self.module = tmp / "bare_health.py"
        self.module.write_text(BARE)
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> BareServer:  # noqa: PYI034
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bare_health:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            cwd=self.module.parent,
            start_new_session=True,
        )
        wait_up(self.port)
        return self

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        os.killpg(self.proc.pid, 15)
        self.proc.wait(15)


def wait_up(port: int) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server did not start")


def wrk(url: str, seconds: float, connections: int) -> float:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"non-2xx answers from {url}:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--guard-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra setting for the guard, e.g. PIPELINE_SECURITY__RATE_LIMITING__ENABLED=false "
        "to see what the rate limiter costs",
    )
    args = parser.parse_args()
    load0 = Path("/proc/loadavg").read_text().split()[:3]
    env = {
        "PIPELINE_SECURITY__RATE_LIMITING__HEALTH": "100000000/minute",
        **dict(item.split("=", 1) for item in args.guard_env),
    }
    with (
        tempfile.TemporaryDirectory(prefix="pg-bench-health-") as tmp,
        Server(f"sqlite+aiosqlite:///{tmp}/guard.db", Path(tmp) / "var", env=env) as guard,
        BareServer(Path(tmp)) as bare,
    ):
        time.sleep(2)  # the guard's loops finish their first ticks
        for server in (bare, guard):
            wrk(server.base_url + "/health", 1, args.connections)  # warm-up
        bare_rates, guard_rates = [wrk(bare.base_url + "/health", args.seconds, args.connections)], []
        for _ in range(args.rounds):
            guard_rates.append(wrk(guard.base_url + "/health", args.seconds, args.connections))
            bare_rates.append(wrk(bare.base_url + "/health", args.seconds, args.connections))
    load1 = Path("/proc/loadavg").read_text().split()[:3]
    ratios = sorted(g / ((bare_rates[i] + bare_rates[i + 1]) / 2) for i, g in enumerate(guard_rates))
    print(
        f"GET /health, wrk 1 thread {args.connections} connections, {args.rounds} paired rounds of "
        f"{args.seconds:g} s"
        f"  (load {' '.join(load0)} -> {' '.join(load1)}, {os.cpu_count()} cores; cwd {ROOT.name})"
        f"{'; guard ' + ' '.join(args.guard_env) if args.guard_env else ''}"
    )
    print(
        f"  bare FastAPI  median {statistics.median(bare_rates):7.0f} req/s  "
        f"({min(bare_rates):.0f}-{max(bare_rates):.0f})"
    )
    print(
        f"  guard         median {statistics.median(guard_rates):7.0f} req/s  "
        f"({min(guard_rates):.0f}-{max(guard_rates):.0f})"
    )
    print(
        f"  guard/bare    median {statistics.median(ratios):.2f}  ({ratios[0]:.2f}-{ratios[-1]:.2f})  "
        "target >= 0.8"
    )


if __name__ == "__main__":
    main()
