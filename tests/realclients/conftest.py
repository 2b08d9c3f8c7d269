"""A real guard process on loopback, for tests that drive real clients (Chromium, Prometheus,
Alertmanager). The binaries come from Debian packages that .ci/run installs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.ports import free_port

ADMIN_PASSWORD = "browser-test-password-123"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("PIPELINE_TEST_ALLOW_MISSING_TOOLS") == "1":
            pytest.skip(f"{name} not installed")
        pytest.fail(f"{name} is not installed; install the Debian package (.ci/run does)", pytrace=False)
    return path


@dataclass
class LiveGuard:
    url: str
    process: subprocess.Popen
    log_path: Path
    env: dict

    def token(self, username: str = "admin", password: str = ADMIN_PASSWORD) -> str:
        r = httpx.post(
            f"{self.url}/api/v1/auth/token", data={"username": username, "password": password}, timeout=10
        )
        r.raise_for_status()
        return r.json()["access_token"]

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}


def start_guard(tmp_path: Path, extra_env: dict | None = None, config_text: str | None = None) -> LiveGuard:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(
        {
            "PIPELINE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'guard.db'}",
            "PIPELINE_DATA_DIR": str(tmp_path / "var"),
            "PIPELINE_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "PIPELINE_SECRET_KEY": "real-clients-secret-key-0123456789abcdefghijkl",
        }
    )
    env.update(extra_env or {})
    args = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if config_text is not None:
        config = tmp_path / "guard.yaml"
        config.write_text(config_text)
        args += ["--config", str(config)]
    log_path = tmp_path / "guard.log"
    process = subprocess.Popen(args, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"guard exited early:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return LiveGuard(url, process, log_path, env)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"guard did not become ready:\n{log_path.read_text()}")


def stop_guard(guard: LiveGuard) -> None:
    guard.process.terminate()
    try:
        guard.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        guard.process.kill()


@pytest.fixture
def live_guard(tmp_path):
    guard = start_guard(tmp_path)
    yield guard
    stop_guard(guard)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser():
    chromium = require_binary("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
