"""Fault-test harness: real guard processes (`python -m app serve`) on a fresh Postgres database,
each behind its own FaultProxy, a loopback HTTP target that records who probed / healed what."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import TEST_PASSWORD, TEST_SECRET, _asyncpg_dsn, password_hash
from tests.faults.proxy import FaultProxy
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


class Recorder:
    """GET /probe/<name> -> 200, or 500 when <name> is in `failing`; POST /heal/<name> and
    POST /notify record the call. Every call is kept with the X-Pipeline-Guard-Replica header."""

    def __init__(self):
        self.failing: set[str] = set()
        self.probes: list[tuple[float, str, str | None]] = []
        self.heals: list[tuple[float, str, str]] = []
        self.notifications: list[dict] = []
        # The notification receiver: every delivery (before dedup) and the payloads processed once per
        # Idempotency-Key; `notify_delay` (seconds, random in [0, it]) widens the window in which a
        # sender can die after the receiver got the request but before it recorded the outcome.
        self.deliveries: list[tuple[float, str | None]] = []
        self.processed: dict[str, dict] = {}
        self.notify_delay = 0.0
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _reply(self, code: int) -> None:
                try:
                    self.send_response(code)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except (BrokenPipeError, ConnectionResetError):  # the caller was killed -9 meanwhile
                    pass

            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                with recorder.lock:
                    recorder.probes.append(
                        (time.monotonic(), name, self.headers.get("X-Pipeline-Guard-Replica"))
                    )
                self._reply(500 if name in recorder.failing else 200)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.path.startswith("/notify"):
                    key = self.headers.get("Idempotency-Key")
                    if recorder.notify_delay:
                        time.sleep(random.uniform(0, recorder.notify_delay))
                    with recorder.lock:
                        recorder.deliveries.append((time.monotonic(), key))
                        if key and key not in recorder.processed:  # idempotent processing
                            try:
                                recorder.processed[key] = json.loads(body or b"{}")
                            except ValueError:
                                recorder.processed[key] = {"raw": body.decode()[:200]}
                    self._reply(200)
                    return
                with recorder.lock:
                    if self.path.startswith("/heal/"):
                        recorder.heals.append(
                            (time.monotonic(), self.path.rsplit("/", 1)[-1], body.decode()[:200])
                        )
                    else:
                        try:
                            recorder.notifications.append(json.loads(body or b"{}"))
                        except ValueError:
                            recorder.notifications.append({"raw": body.decode()[:200]})
                self._reply(200)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def probes_since(self, t: float) -> list[tuple[float, str, str | None]]:
        with self.lock:
            return [p for p in self.probes if p[0] >= t]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class GuardProcess:
    def __init__(self, cluster: Cluster, index: int, *, region: str | None = None):
        self.cluster = cluster
        self.index = index
        self.region = region
        self.port = free_port()
        self.proxy = FaultProxy("127.0.0.1", cluster.pg_port)
        self.proxy.start()
        self.dir = cluster.tmp / f"replica{index}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "guard.log"
        self.proc: subprocess.Popen | None = None
        self.generation = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.generation += 1
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
        env.update(
            {
                "PIPELINE_ENV": "test",
                "PIPELINE_DATABASE_URL": self.cluster.url_via(self.proxy.port),
                "PIPELINE_REPLICA_ID": f"guard{self.index}",
                "PIPELINE_SECRET_KEY": TEST_SECRET,
                # One key for the cluster, as in a real deployment: any replica decrypts the channel
                # configuration another one stored (each would otherwise generate its own).
                "PIPELINE_ENCRYPTION_KEY": self.cluster.encryption_key,
                "PIPELINE_DATA_DIR": str(self.dir / "var"),
                "PIPELINE_CONFIG": str(self.cluster.config_path),
                "PIPELINE_RATE_LIMIT_ENABLED": "false",
                "PIPELINE_LOG_LEVEL": "INFO",
            }
        )
        if self.region:
            env["PIPELINE_REGION"] = self.region
        with open(self.log_path, "a") as log:  # the child keeps its own copy of the descriptor
            log.write(f"\n===== start generation {self.generation} =====\n")
            log.flush()
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "app",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--no-migrate",
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"guard {self.index} exited: {self.tail()}")
            try:
                if httpx.get(self.base + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"guard {self.index} did not become healthy: {self.tail()}")

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def sigterm(self, wait: bool = True) -> float:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        if wait:
            self.proc.wait(timeout=30)
        return time.monotonic() - started

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proxy.close()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except OSError:
            return ""


class Cluster:
    def __init__(
        self,
        url: str,
        tmp: Path,
        recorder: Recorder,
        *,
        lease_ttl: float,
        renew_interval: float,
        extra_config: str = "",
    ):
        self.url = url
        parsed = make_url(url)
        self.pg_port = parsed.port or 5432
        self.tmp = tmp
        self.recorder = recorder
        self.lease_ttl = lease_ttl
        self.renew_interval = renew_interval
        self.config_path = tmp / "guard.yaml"
        self.config_path.write_text(
            f"replication:\n  lease_ttl: {lease_ttl}\n  renew_interval: {renew_interval}\n"
            "database:\n  pool_timeout: 1\n  statement_timeout: 5\n"
            "security:\n  ssrf_allowlist: ['127.0.0.1/32']\n" + extra_config
        )
        self.guards: list[GuardProcess] = []
        self._token: str | None = None
        from cryptography.fernet import Fernet

        self.encryption_key = Fernet.generate_key().decode()

    def url_via(self, port: int) -> str:
        return make_url(self.url).set(port=port).render_as_string(hide_password=False)

    def add(self, count: int = 1, *, region: str | None = None) -> list[GuardProcess]:
        new = [GuardProcess(self, len(self.guards) + i, region=region) for i in range(count)]
        self.guards.extend(new)
        for g in new:
            g.start()
        for g in new:
            g.wait_healthy()
        return new

    # -- direct database access (not through any proxy) -----------------------------------------
    def sql(self, statement: str, *args):
        import asyncpg

        async def run():
            conn = await asyncpg.connect(_asyncpg_dsn(self.url), timeout=10)
            try:
                return await conn.fetch(statement, *args)
            finally:
                await conn.close()

        return asyncio.run(run())

    def leases(self) -> dict[int, tuple[str, int]]:
        rows = self.sql(
            "SELECT component_id, replica_id, epoch FROM component_leases WHERE expires_at > now()"
        )
        return {r["component_id"]: (r["replica_id"], r["epoch"]) for r in rows}

    def replica_ids(self) -> dict[str, str]:
        """guard name prefix (guardN) -> its current replica id (live rows)."""
        rows = self.sql(
            "SELECT id FROM replicas WHERE status = 'active' "
            "AND heartbeat_at > now() - make_interval(secs => $1)",
            float(self.lease_ttl),
        )
        return {r["id"].rsplit("-", 1)[0]: r["id"] for r in rows}

    # -- API ----------------------------------------------------------------------------------
    def token(self, guard: GuardProcess | None = None) -> dict[str, str]:
        guard = guard or self.guards[0]
        if self._token is None:
            r = httpx.post(
                guard.base + "/api/v1/auth/token",
                data={"username": "admin", "password": TEST_PASSWORD},
                timeout=10,
            )
            assert r.status_code == 200, r.text
            self._token = r.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def create_components(
        self,
        count: int,
        *,
        failing: bool = False,
        recovery: bool = False,
        interval: float = 1.0,
        prefix: str = "c",
    ) -> list[str]:
        names = [f"{prefix}{i:04d}" for i in range(count)]
        if failing:
            self.recorder.failing.update(names)
        guard = self.guards[0]
        with httpx.Client(base_url=guard.base, headers=self.token(), timeout=30) as client:
            for name in names:
                body = {
                    "name": name,
                    "check": {
                        "kind": "http",
                        "url": self.recorder.url(f"/probe/{name}"),
                        "interval": interval,
                        "timeout": 2,
                        "failure_threshold": 2,
                        "success_threshold": 1,
                    },
                }
                if recovery:
                    body["recovery"] = {
                        "strategies": [
                            {
                                "kind": "webhook",
                                "params": {
                                    "url": self.recorder.url(f"/heal/{name}"),
                                    "method": "POST",
                                    "timeout": 5,
                                },
                            }
                        ],
                        "max_attempts": 1,
                        "verify_timeout": 600,
                        "grace_period": 1,
                        "cooldown": 1,
                    }
                r = client.post("/api/v1/components", json=body)
                assert r.status_code == 201, r.text
        return names

    def wait_for(self, predicate, timeout: float, step: float = 0.1):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(step)
        return predicate()

    def close(self) -> None:
        for g in self.guards:
            g.stop()


@pytest.fixture
def recorder():
    r = Recorder()
    yield r
    r.close()


@pytest.fixture
def cluster_factory(postgres_databases, tmp_path, recorder):
    clusters: list[Cluster] = []

    def make(*, lease_ttl: float = 6.0, renew_interval: float = 2.0, extra_config: str = "") -> Cluster:
        url = postgres_databases.create()
        cluster = Cluster(
            url,
            tmp_path,
            recorder,
            lease_ttl=lease_ttl,
            renew_interval=renew_interval,
            extra_config=extra_config,
        )
        cluster.sql(
            "INSERT INTO users (username, password_hash, role, disabled, failed_logins, token_version, "
            "created_at, updated_at) VALUES ('admin', $1, 'admin', false, 0, 0, now(), now())",
            password_hash(),
        )
        clusters.append(cluster)
        return cluster

    yield make
    for c in clusters:
        c.close()


def histogram(values) -> dict[int, int]:
    return dict(sorted(collections.Counter(values).items()))
