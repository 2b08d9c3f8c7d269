"""Credentials sent in URLs stay out of the logs of a running guard (`pipeline-guard serve`, its
uvicorn access log included): a ping token as ``?token=``, a ``/ping/<token>`` path, an API key."""

from __future__ import annotations

import time

import httpx

from tests.security.serve_process import guard_process

SECRETS = ("PINGTOKEN0123456789", "PATHTOKEN0123456789", "APIKEY0123456789")


def test_url_credentials_never_reach_the_access_log(tmp_path):
    log_path = tmp_path / "guard.log"
    with guard_process(
        f"sqlite+aiosqlite:///{tmp_path}/guard.db",
        tmp_path,
        PIPELINE_LOG_LEVEL="INFO",
        PIPELINE_RATE_LIMIT_ENABLED="false",
    ) as base:
        httpx.post(f"{base}/api/v1/components/etl/heartbeat?token={SECRETS[0]}&status=success", timeout=10)
        httpx.post(f"{base}/ping/{SECRETS[1]}", timeout=10)
        httpx.get(f"{base}/api/v1/components?api_key={SECRETS[2]}", timeout=10)
        httpx.get(f"{base}/health?probe=1", timeout=10)  # the last line: the log is flushed up to here
        deadline = time.monotonic() + 30
        while "probe=1" not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    text = log_path.read_text()
    assert "/api/v1/components/etl/heartbeat?token=***&status=success" in text, text[-3000:]
    assert "/ping/***" in text
    for secret in SECRETS:
        assert secret not in text, text[-3000:]
