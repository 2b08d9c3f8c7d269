"""A real `pipeline-guard serve` process for the probe benchmark, and the blackbox_exporter baseline.

The guard runs exactly as deployed (its own process, every loop, uvicorn): the benchmark sees it only
from outside - the database (results stored), `/api/v1/status/detailed` (probes run, schedule lag),
/proc (RSS, CPU) and its log (every line about a locked database, from any loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from bench._server import ROOT, SECRET, free_port

CLK_TCK = os.sysconf("SC_CLK_TCK")
SHUTDOWN_LINE = re.compile(
    r"stopped probing: (\d+) checks run, (\d+) results written, (\d+) dropped, (\d+) not written"
)
ADMIN_PASSWORD = "bench-admin-password-0123456789"


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


class GuardServe:
    """`python -m app serve` on a config file in ``tmp``, from ``app_dir`` (this tree, or an export of
    another commit for a before/after comparison)."""

    def __init__(
        self,
        database_url: str,
        tmp: Path,
        *,
        interval: float,
        workers: int,
        jitter: float,
        app_dir: Path = ROOT,
    ):
        self.tmp = tmp
        self.app_dir = app_dir
        self.port = free_port()
        self.log_path = tmp / "serve.log"
        self.config = tmp / "guard.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "env": "test",
                    "database_url": database_url,
                    "data_dir": str(tmp / "var"),
                    "max_workers": workers,
                    # INFO: the scheduler's shutdown figures (checks run, results written) are read
                    # from the log; at INFO the guard logs a few lines a minute besides.
                    "log_level": "INFO",
                    "security": {"secret_key": SECRET, "rate_limiting": {"enabled": False}},
                    "pipeline": {
                        "monitoring": {
                            "interval": f"{interval:g}s",
                            "health_check_timeout": "5s",
                            "jitter": jitter,
                        }
                    },
                }
            )
        )
        self.proc: subprocess.Popen | None = None
        self.token: str | None = None
        self.api_errors = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
        env.update(PYTHONPATH=str(self.app_dir), PIPELINE_ADMIN_PASSWORD=ADMIN_PASSWORD)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "app",
                    "serve",
                    "--config",
                    str(self.config),
                    "--port",
                    str(self.port),
                ],
                cwd=self.app_dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def wait_ready(self, client: httpx.AsyncClient, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited: {self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{self.base_url}/health")).status_code in (200, 503):
                    break
            await asyncio.sleep(0.3)
        else:
            raise RuntimeError("serve did not answer /health")
        while True:  # 503 while the database is busy loading the fleet
            resp = await client.post(
                f"{self.base_url}/api/v1/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD}
            )
            if resp.status_code != 503 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        resp.raise_for_status()
        self.token = resp.json()["access_token"]

    async def scheduler_stats(self, client: httpx.AsyncClient) -> dict:
        """The scheduler's figures; a 5xx (the database busy) or no answer within 30 s (the event loop
        blocked) is counted in `api_errors` and retried."""
        for _ in range(20):
            try:
                resp = await client.get(
                    f"{self.base_url}/api/v1/status/detailed",
                    headers={"Authorization": f"Bearer {self.token}"},
                    timeout=30,
                )
            except httpx.TimeoutException:
                self.api_errors += 1
                continue
            if resp.status_code < 500:
                break
            self.api_errors += 1
            await asyncio.sleep(0.5)
        else:
            raise RuntimeError("the guard did not answer /api/v1/status/detailed 20 times in a row")
        resp.raise_for_status()
        return resp.json()["scheduler"]

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def rss_mb(self) -> float:
        return proc_rss_mb(self.proc.pid)

    def lock_failures(self) -> tuple[int, str | None]:
        """Lines of the guard's log (any loop, any level) that mention a locked database."""
        lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if "locked" in line]
        return len(lines), (lines[0][:200] if lines else None)

    def shutdown_figures(self) -> dict | None:
        """The scheduler's own figures when it stopped probing (None: a tree that does not log them)."""
        for line in self.log_path.read_text(errors="replace").splitlines():
            if match := SHUTDOWN_LINE.search(line):
                run, written, dropped, not_written = (int(g) for g in match.groups())
                return {
                    "checks_run": run,
                    "written": written,
                    "dropped": dropped,
                    "not_written": not_written,
                }
        return None

    def stop(self) -> int | None:
        """SIGTERM (the graceful shutdown drains the result buffer); returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            return None


BLACKBOX_CONFIG = {
    "modules": {"http_2xx": {"prober": "http", "timeout": "5s", "http": {"preferred_ip_protocol": "ip4"}}}
}


@contextlib.contextmanager
def blackbox_exporter():
    """prometheus-blackbox-exporter on a free loopback port; yields (process, probe url)."""
    with tempfile.TemporaryDirectory(prefix="blackbox-bench-") as tmp:
        config = Path(tmp) / "blackbox.yml"
        config.write_text(yaml.safe_dump(BLACKBOX_CONFIG))
        port = free_port()
        proc = subprocess.Popen(
            [
                "prometheus-blackbox-exporter",
                f"--config.file={config}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=error",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield proc, f"http://127.0.0.1:{port}/probe"
        finally:
            proc.terminate()
            proc.wait(10)


async def drive_blackbox(
    probe_url: str, targets: list[str], *, rate: float, duration: float, concurrency: int
) -> int:
    """Ask the exporter for `rate` probes per second of `targets` (as Prometheus scrapes would) for
    `duration` seconds; returns the number of successful probes."""
    import aiohttp

    done = 0
    queue: asyncio.Queue[str] = asyncio.Queue(maxsize=concurrency * 2)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done
        while True:
            target = await queue.get()
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with session.get(probe_url, params={"target": target, "module": "http_2xx"}) as resp:
                    if b"probe_success 1" in await resp.read():
                        done += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:
        workers = [asyncio.create_task(worker(session)) for _ in range(concurrency)]
        start = time.monotonic()
        sent = 0
        while (elapsed := time.monotonic() - start) < duration:
            while sent < rate * elapsed and not queue.full():  # what the exporter cannot take is not asked
                queue.put_nowait(targets[sent % len(targets)])
                sent += 1
            await asyncio.sleep(0.01)
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    return done
