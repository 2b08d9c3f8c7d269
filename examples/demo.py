"""`make demo`: guard the flaky worker and watch the guard detect, restart, verify and resolve.

Starts examples/flaky_worker.py, starts `pipeline-guard serve --config examples/demo.yaml` on a
temporary data dir, breaks the worker (`--break crash|hang`), and prints each step as the API shows it:
detection (incident + alert firing) → restart (healing attempt running) → healthy (attempt verified)
→ alert resolved with its resolution_action. ``run_demo()`` is also what the end-to-end test runs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
COMPONENT = "flaky-worker"
PASSWORD = "demo-password-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, *, token: str | None = None, data: dict | None = None, form: dict | None = None,
         timeout: float = 2.0):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = None
    if form is not None:
        body = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif data is not None:
        body = json.dumps(data).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        raw = response.read()
        return json.loads(raw) if raw else None


def wait_for(predicate, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (OSError, urllib.error.URLError, ValueError):
            value = None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("timed out waiting")


class Demo:
    def __init__(self, workdir: Path, *, out=print, python: str = sys.executable) -> None:
        self.workdir = workdir
        self.out = out
        self.python = python
        self.worker_port = free_port()
        self.guard_port = free_port()
        self.base = f"http://127.0.0.1:{self.guard_port}"
        self.guard: subprocess.Popen | None = None
        self.token: str | None = None
        self.t0 = time.monotonic()

    def say(self, message: str) -> None:
        self.out(f"[{time.monotonic() - self.t0:6.2f}s] {message}")

    def start_worker(self) -> None:
        subprocess.run([self.python, str(HERE / "restart_worker.py"), "--port", str(self.worker_port),
                        "--pid-file", str(self.workdir / "worker.pid"), "--log", str(self.workdir / "worker.log")],
                       check=True, capture_output=True, timeout=30)
        self.say(f"worker up on 127.0.0.1:{self.worker_port} (pid {self.worker_pid()})")

    def worker_pid(self) -> int | None:
        try:
            return int((self.workdir / "worker.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def start_guard(self) -> None:
        env = {
            **os.environ,
            "PIPELINE_ENV": "development",
            "PIPELINE_DATA_DIR": str(self.workdir / "var"),
            "PIPELINE_DATABASE_URL": f"sqlite+aiosqlite:///{self.workdir / 'guard.db'}",
            "PIPELINE_ADMIN_PASSWORD": PASSWORD,
            "DEMO_PYTHON": self.python,
            "DEMO_EXAMPLES": str(HERE),
            "DEMO_DIR": str(self.workdir),
            "DEMO_WORKER_PORT": str(self.worker_port),
        }
        log = open(self.workdir / "guard.log", "ab")  # noqa: SIM115 - closed with the process
        self.guard = subprocess.Popen(
            [self.python, "-m", "app", "serve", "--config", str(HERE / "demo.yaml"), "--port", str(self.guard_port),
             "--log-level", "WARNING"],
            cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True,
        )
        wait_for(lambda: http("GET", f"{self.base}/health", timeout=1) is not None, 90)
        self.token = http("POST", f"{self.base}/api/v1/auth/token",
                          form={"username": "admin", "password": PASSWORD})["access_token"]
        self.say(f"guard serving on {self.base} (pid {self.guard.pid})")

    def api(self, path: str):
        return http("GET", f"{self.base}{path}", token=self.token)

    def status(self) -> str | None:
        for component in self.api("/api/v1/status")["components"]:
            if component["name"] == COMPONENT:
                return component["status"]
        return None

    def run(self, how: str = "crash", timeout: float = 60.0) -> dict:
        timeline: dict = {}
        wait_for(lambda: self.status() == "healthy", 90)
        self.say(f"{COMPONENT} is healthy; breaking it: /control/{how}")
        try:
            http("POST", f"http://127.0.0.1:{self.worker_port}/control/{how}", timeout=1)
        except (OSError, urllib.error.URLError):
            pass
        broken_at = time.monotonic()
        timeline["broken_at"] = broken_at
        seen: set[str] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and "alert_resolved" not in seen:
            try:
                alerts = self.api(f"/api/v1/alerts?component={COMPONENT}&status=all&limit=20")["items"]
                attempts = self.api(f"/api/v1/healing/attempts?component={COMPONENT}&limit=20")["items"]
                status = self.status()
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
                continue
            now = time.monotonic()
            health_alerts = [a for a in alerts if a.get("fingerprint", "").startswith("health:")]
            if "detected" not in seen and (health_alerts or status in ("critical", "failed")):
                seen.add("detected")
                timeline["detected"] = now - broken_at
                self.say(f"DETECTED: {COMPONENT} is {status}; alert firing: "
                         f"{health_alerts[0]['message'] if health_alerts else '(pending)'}")
            for attempt in reversed(attempts):
                key = f"attempt-{attempt['id']}-{attempt['state']}"
                if key in seen:
                    continue
                seen.add(key)
                if attempt["state"] in ("running", "verifying") and "restart" not in seen:
                    seen.add("restart")
                    timeline["restart"] = now - broken_at
                    self.say(f"RESTART: healing attempt {attempt['id']} ({attempt['strategy']}): {attempt['description']}")
                if attempt["state"] == "succeeded":
                    seen.add("healthy")
                    timeline["healthy"] = now - broken_at
                    timeline["attempt"] = attempt
                    self.say(f"HEALTHY: attempt {attempt['id']} verified; time to recover "
                             f"{attempt['time_to_recover_s']:.2f}s ({attempt['detail']})")
                elif attempt["state"] in ("failed", "interrupted"):
                    self.say(f"attempt {attempt['id']} {attempt['state']}: {attempt['detail']}")
            resolved = [a for a in health_alerts if a["status"] == "resolved" and a.get("resolution_action")]
            if "healthy" in seen and resolved:
                seen.add("alert_resolved")
                timeline["alert_resolved"] = now - broken_at
                timeline["resolution_action"] = resolved[0]["resolution_action"]
                self.say(f"ALERT RESOLVED: {resolved[0]['resolution_action']!r} (worker pid now {self.worker_pid()})")
            time.sleep(0.1)
        timeline["seen"] = sorted(seen)
        return timeline

    def stop(self) -> None:
        if self.guard is not None and self.guard.poll() is None:
            os.killpg(self.guard.pid, signal.SIGTERM)
            try:
                self.guard.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.guard.pid, signal.SIGKILL)
                self.guard.wait()
        pid = self.worker_pid()
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def run_demo(workdir: Path, *, how: str = "crash", out=print, timeout: float = 60.0) -> dict:
    demo = Demo(workdir, out=out)
    try:
        demo.start_worker()
        demo.start_guard()
        return demo.run(how, timeout=timeout)
    finally:
        demo.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--break", dest="how", choices=["crash", "hang", "slow"], default="crash")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pipeline-guard-demo-") as tmp:
        timeline = run_demo(Path(tmp), how=args.how)
    ok = "alert_resolved" in timeline["seen"]
    print("\nhealed and resolved." if ok else f"\ndid not complete: {timeline['seen']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
