"""Credentials sent in URLs stay out of the logs of a running guard (`pipeline-guard serve`, its
uvicorn access log included): a ping token as ``?token=``, a ``/ping/<token>`` path, an API key."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from live_guard import free_port

from tests.conftest import TEST_SECRET

ROOT = Path(__file__).resolve().parents[2]
SECRETS = ("PINGTOKEN0123456789", "PATHTOKEN0123456789", "APIKEY0123456789")


def test_url_credentials_never_reach_the_access_log(tmp_path):
    port = free_port()
    log_path = tmp_path / "guard.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(
        {
            "PIPELINE_ENV": "test",
            "PIPELINE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/guard.db",
            "PIPELINE_SECRET_KEY": TEST_SECRET,
            "PIPELINE_DATA_DIR": str(tmp_path / "var"),
            "PIPELINE_ADMIN_PASSWORD": "correct-horse-battery-staple",
            "PIPELINE_LOG_LEVEL": "INFO",
            "PIPELINE_RATE_LIMIT_ENABLED": "false",
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
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log_path.read_text()[-2000:]
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()[-2000:]
            time.sleep(0.2)
        httpx.post(f"{base}/api/v1/components/etl/heartbeat?token={SECRETS[0]}&status=success", timeout=10)
        httpx.post(f"{base}/ping/{SECRETS[1]}", timeout=10)
        httpx.get(f"{base}/api/v1/components?api_key={SECRETS[2]}", timeout=10)
        httpx.get(f"{base}/health?probe=1", timeout=10)  # the last line: the log is flushed up to here
        deadline = time.monotonic() + 30
        while "probe=1" not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = log_path.read_text()
    assert "/api/v1/components/etl/heartbeat?token=***&status=success" in text, text[-3000:]
    assert "/ping/***" in text
    for secret in SECRETS:
        assert secret not in text, text[-3000:]
