"""A real ``python -m app serve`` on a free loopback port (uvicorn as shipped: httptools, uvloop, no
proxy-header handling of its own), for attacks that must meet the guard exactly as deployed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.conftest import TEST_PASSWORD, TEST_SECRET
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "admin"


@contextmanager
def guard_process(db_url: str, tmp_path: Path, config: str = "", **env_overrides: str) -> Iterator[str]:
    """Serve a guard on ``db_url`` with ``config`` (YAML) and ``PIPELINE_*`` overrides; yields its base
    URL. The first admin is ``admin`` with the tests' password. Its log is ``tmp_path / "guard.log"``."""
    port = free_port()
    log_path = tmp_path / "guard.log"
    config_path = tmp_path / "guard.yaml"
    config_path.write_text(config or "{}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(
        {
            "PIPELINE_ENV": "test",
            "PIPELINE_DATABASE_URL": db_url,
            "PIPELINE_SECRET_KEY": TEST_SECRET,
            "PIPELINE_DATA_DIR": str(tmp_path / "var"),
            "PIPELINE_ADMIN_PASSWORD": TEST_PASSWORD,
            "PIPELINE_CONFIG": str(config_path),
            **env_overrides,
        }
    )
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            try:
                if httpx.get(base + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def admin_headers(base: str) -> dict[str, str]:
    response = httpx.post(
        f"{base}/api/v1/auth/token", data={"username": ADMIN, "password": TEST_PASSWORD}, timeout=30
    )
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}
