"""The scenario suite's harness: a real `pipeline-guard serve` process per dialect, workloads in their
own processes (workload.py), a webhook channel receiver, and an API client that reads a component's
whole incident life (transitions, healing attempts, alerts) the way an operator would."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from tests.conftest import TEST_PASSWORD, TEST_SECRET
from tests.faults.proxy import FaultProxy
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
# The tree whose `app` the guard process runs (default: this one). Another checkout can be put under
# the same scenarios, e.g. to see which of them a branch fixes before it is merged.
APP_ROOT = Path(os.environ.get("PIPELINE_SCENARIO_APP_ROOT") or ROOT)
WORKLOAD = Path(__file__).resolve().with_name("workload.py")
FIXTURES = ROOT.parent / "shared" / "fixtures"  # shared/ lies beside the checkout, as in CI
AM_TOKEN = "scenario-alertmanager-token-0123456789"


def guard_config(*, max_concurrent: int = 10) -> str:
    """Global settings stay at their documented defaults where a component's own setting must win
    (health_check_timeout 10 s, recovery_grace 30 s): a scenario then shows whether it did."""
    return f"""\
pipeline:
  monitoring:
    interval: 1s
    health_check_timeout: 10s
    recovery_grace: 30s
healing:
  enabled: true
  max_concurrent: {max_concurrent}
  max_concurrent_per_group: {max_concurrent}
  command_actions_enabled: true
  command_allowlist: [{json.dumps(sys.executable)}]
security:
  rate_limiting:
    enabled: false
  ssrf_allowlist: ['127.0.0.1/32']
alerting:
  outbox_interval: 0.5s
  retry_base: 1s
database:
  pool_timeout: 2
  statement_timeout: 5
"""


class GuardProcess:
    """`python -m app serve` on a free port, on `db_url` (through a FaultProxy for Postgres)."""

    def __init__(self, db_url: str, workdir: Path, *, config: str):
        self.db_url = db_url
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.dir / "guard.yaml"
        self.config_path.write_text(config)
        self.log_path = self.dir / "guard.log"
        self.proxy: FaultProxy | None = None
        url = make_url(db_url)
        self.dialect = "postgres" if url.get_backend_name() == "postgresql" else "sqlite"
        if self.dialect == "postgres":
            self.proxy = FaultProxy(url.host or "127.0.0.1", url.port or 5432)
            self.proxy.start()
            self.served_url = url.set(port=self.proxy.port).render_as_string(hide_password=False)
        else:
            self.served_url = db_url
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self._token: str | None = None
        # One client for the whole run: a new one per call would rebuild its TLS context each time.
        self.http = httpx.Client(timeout=15)

    @property
    def sqlite_path(self) -> Path:
        return Path(make_url(self.db_url).database)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, same_port: bool = False) -> None:
        """Serve; ``same_port`` keeps the last port (heartbeat jobs and webhooks keep their URL)."""
        if not (same_port and self.port):
            self.port = free_port()
        self._token = None
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
        env.update(
            {
                "PIPELINE_ENV": "test",
                "PIPELINE_DATABASE_URL": self.served_url,
                "PIPELINE_DATA_DIR": str(self.dir / "var"),
                "PIPELINE_ADMIN_PASSWORD": TEST_PASSWORD,
                "PIPELINE_SECRET_KEY": TEST_SECRET,
                "PIPELINE_ALERTMANAGER_TOKEN": AM_TOKEN,
                "PIPELINE_LOG_LEVEL": "INFO",
            }
        )
        with open(self.log_path, "a") as log:
            log.write(f"\n===== start {datetime.now(UTC).isoformat()} =====\n")
            log.flush()
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "app",
                    "serve",
                    "--config",
                    str(self.config_path),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                cwd=APP_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the guard exited: {self.tail()}")
            try:
                r = self.http.get(self.base + "/ready", timeout=1)
                # The guard's own answer, not that of a server which took the port meanwhile.
                if r.status_code == 200 and "checks" in r.json():
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"the guard did not become ready: {self.tail()}")

    def restart(self) -> float:
        """SIGTERM (a graceful stop: its shutdown runs), then serve again on the same port and the same
        database. Returns how long the guard was away (s)."""
        assert self.proc is not None
        away = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self.start(same_port=True)
        return time.monotonic() - away

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proxy is not None:
            self.proxy.close()
            self.proxy = None
        self.http.close()

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- the API, as a user drives it ---------------------------------------------------------
    def headers(self) -> dict[str, str]:
        if self._token is None:
            r = self.http.post(
                self.base + "/api/v1/auth/token",
                data={"username": "admin", "password": TEST_PASSWORD},
                timeout=10,
            )
            assert r.status_code == 200, r.text
            self._token = r.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def get(self, path: str, **params) -> dict:
        r = self.http.get(self.base + path, params=params, headers=self.headers())
        assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text[:500]}"
        return r.json()

    def post(
        self, path: str, body: dict | None = None, *, expect: int | tuple = (200, 201, 202), **kw
    ) -> dict:
        r = self.http.post(
            self.base + path, json=body, headers={**self.headers(), **kw.pop("headers", {})}, **kw
        )
        expected = expect if isinstance(expect, tuple) else (expect,)
        assert r.status_code in expected, f"POST {path}: {r.status_code} {r.text[:500]}"
        return r.json() if r.content else {}

    def status(self, name: str) -> str | None:
        for component in self.get("/api/v1/status")["components"]:
            if component["name"] == name:
                return component["status"]
        return None

    def transitions(self, name: str) -> list[dict]:
        """Oldest first."""
        return list(
            reversed(
                self.get(f"/api/v1/components/{name}/history", limit=200, results_limit=0)["transitions"]
            )
        )

    def attempts(self, name: str) -> list[dict]:
        """Oldest first."""
        return sorted(
            self.get("/api/v1/healing/attempts", component=name, limit=100)["items"], key=lambda a: a["id"]
        )

    def alerts(self, name: str) -> list[dict]:
        return self.get("/api/v1/alerts", component=name, status="all", limit=100)["items"]


class Workload:
    """One target (HTTP server or heartbeat job) in its own process, steered through files in `dir`."""

    def __init__(self, root: Path, name: str, *, role: str = "http"):
        self.name = name
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.role = role
        self.proc: subprocess.Popen | None = None

    def configure(
        self,
        *,
        guard: str = "",
        token: str = "",
        mode: str = "ok",
        restart_mode: str = "fix",
        boot_delay: float = 0,
        action_sleep: str = "",
    ) -> None:
        (self.dir / "spec.json").write_text(
            json.dumps(
                {"role": self.role, "port": self.port, "guard": guard, "component": self.name, "token": token}
            )
        )
        self.set("mode", mode)
        self.set("restart_mode", restart_mode)
        self.set("boot_delay", str(boot_delay))
        if action_sleep:
            self.set("action_sleep", action_sleep)

    def set(self, name: str, value: str) -> None:
        tmp = self.dir / f".{name}.tmp"
        tmp.write_text(value)
        os.replace(tmp, self.dir / name)

    def mode(self, value: str) -> datetime:
        """Change what the workload does; returns when (UTC), the fault's injection time."""
        at = datetime.now(UTC)
        self.set("mode", value)
        return at

    def start(self) -> None:
        with open(self.dir / "workload.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(WORKLOAD), "serve", str(self.dir)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    def restart_argv(self) -> list[str]:
        return [sys.executable, str(WORKLOAD), "restart", str(self.dir)]

    def action_lines(self) -> list[list[str]]:
        try:
            return [
                line.split() for line in (self.dir / "actions.log").read_text().splitlines() if line.strip()
            ]
        except FileNotFoundError:
            return []

    def actions(self) -> int:
        """How many times the recovery command was run (the ground truth, outside the guard)."""
        return sum(1 for parts in self.action_lines() if parts[0] == "start")

    def concurrent_actions(self) -> int:
        return sum(1 for parts in self.action_lines() if parts[0] == "concurrent")

    def action_groups(self) -> list[int]:
        return [int(parts[3]) for parts in self.action_lines() if parts[0] == "start"]

    def stop(self) -> None:
        """Kill the workload and any command process group still alive (both were started for the test)."""
        for pgid in self.action_groups():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        try:
            pid = int((self.dir / "pid").read_text())
            os.kill(pid, signal.SIGKILL)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            pass
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class NotificationSink:
    """The webhook channel's receiver on loopback: counts deliveries per component and alert status."""

    def __init__(self):
        self.lock = threading.Lock()
        self.received: list[dict] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    payload = json.loads(body or b"{}")
                except ValueError:
                    payload = {"raw": body[:200].decode(errors="replace")}
                with sink.lock:
                    sink.received.append(payload)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def for_component(self, name: str) -> list[dict]:
        with self.lock:
            return [p for p in self.received if (p.get("alert") or {}).get("component") == name]

    def kinds(self, name: str) -> Counter:
        return Counter(p.get("kind") for p in self.for_component(name))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ActionReceiver:
    """A loopback "rerun the stage" API for webhook strategies: ``POST /fix/NAME`` counts the call and,
    when NAME's workload is registered with ``fixes=True``, puts it right (``mode`` ok), else leaves it
    as it is (a webhook that is accepted and does not help)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls: Counter = Counter()
        self.targets: dict[str, tuple[Workload, bool]] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                name = self.path.rsplit("/", 1)[-1]
                with receiver.lock:
                    receiver.calls[name] += 1
                    workload, fixes = receiver.targets.get(name, (None, False))
                if workload is not None and fixes:
                    workload.set("mode", "ok")
                self.send_response(200 if workload is not None else 404)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def register(self, workload: Workload, *, fixes: bool) -> str:
        with self.lock:
            self.targets[workload.name] = (workload, fixes)
        return f"http://127.0.0.1:{self.server.server_address[1]}/fix/{workload.name}"

    def count(self, name: str) -> int:
        with self.lock:
            return self.calls[name]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value)


def seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return round((later - earlier).total_seconds(), 2)


def wait_for(predicate, timeout: float, step: float = 0.25, what: str = "a condition", story=None):
    """Poll `predicate` until truthy; on time-out fail with `what` and, when given, `story()`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    value = predicate()
    assert value, f"timed out after {timeout:g} s waiting for {what}" + (f"\n{story()}" if story else "")
    return value


@dataclass
class Figures:
    """One scenario's measured figures, for the summary table."""

    dialect: str
    scenario: str
    detection_s: float | None = None
    mttr_s: float | None = None
    bound_s: float | None = None
    actions: int = 0
    outcome: str = ""
    notes: list[str] = field(default_factory=list)

    def row(self) -> str:
        def fmt(v):
            return "-" if v is None else f"{v:.1f}"

        return (
            f"{self.dialect:8} {self.scenario:22} {fmt(self.detection_s):>9} {fmt(self.mttr_s):>8} "
            f"{fmt(self.bound_s):>8} {self.actions:>7}  {self.outcome} {'; '.join(self.notes)}"
        )


HEADER = f"{'dialect':8} {'scenario':22} {'detect_s':>9} {'mttr_s':>8} {'bound_s':>8} {'actions':>7}  outcome"
FIGURES: list[Figures] = []
