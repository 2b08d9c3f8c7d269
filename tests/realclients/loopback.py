"""Loopback helpers for the real-client tests: an HTTP target/receiver in a thread, a guard config
with a few fast-checked components, a bounded wait, and external daemons (Prometheus, Alertmanager)
started on free 127.0.0.1 ports and always killed."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import yaml


class Target:
    """GET /ok -> 200, GET /fail -> 500, GET /toggle -> 200 or 503 as ``toggle_ok`` says;
    POST /heal makes /toggle healthy again (a recovery webhook); every POST -> 200, its JSON body kept."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.toggle_ok = True
        target = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _reply(self, code: int, body: bytes = b"ok") -> None:
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path.startswith("/fail"):
                    self._reply(500, b"boom")
                elif self.path.startswith("/toggle"):
                    self._reply(200) if target.toggle_ok else self._reply(503, b"down")
                else:
                    self._reply(200)

            def do_POST(self):
                length = min(int(self.headers.get("Content-Length") or 0), 1 << 20)
                raw = self.rfile.read(length)
                with contextlib.suppress(ValueError):
                    target.received.append(
                        {"path": self.path, "body": json.loads(raw or b"null"), "headers": dict(self.headers)}
                    )
                if self.path.startswith("/heal"):
                    target.toggle_ok = True
                self._reply(200)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def guard_config(target: Target, *, recovery: dict | None = None, **extra: Any) -> str:
    """Two components checked every second: `api` (healthy, critical) and `feature-store` (failing,
    with the given recovery policy)."""
    config: dict[str, Any] = {
        "pipeline": {
            "monitoring": {
                "interval": "1s",
                "health_check_timeout": "2s",
                "failure_threshold": 2,
                "jitter": 0.0,
            }
        },
        "alerting": {"outbox_interval": "500ms", "retry_base": "1s"},
        "components": [
            {
                "name": "api",
                "critical": True,
                "labels": {"app": "api"},
                "check": {"kind": "http", "url": f"{target.base}/ok", "interval": "1s"},
            },
            {
                "name": "feature-store",
                "labels": {"app": "features"},
                "check": {"kind": "http", "url": f"{target.base}/fail", "interval": "1s"},
                **({"recovery": recovery} if recovery else {}),
            },
        ],
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return yaml.safe_dump(config, sort_keys=False)


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 60, every: float = 0.5) -> Any:
    """Call ``probe`` until it returns something truthy; fail with the last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last error
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@contextlib.contextmanager
def daemon(args: list[str], log_path: Path) -> Iterator[subprocess.Popen]:
    """Run an external daemon for the block; terminate (then kill) it at the end, whatever happens."""
    with log_path.open("w") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
