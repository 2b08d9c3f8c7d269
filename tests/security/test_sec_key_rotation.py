"""Rotating the encryption key the way the README tells an operator to: guards on ``new,old``, then
``pipeline-guard secrets rotate``, then guards on ``new`` alone. Every stored secret (a channel's
configuration, an http check's credentials, a recovery webhook's credentials) must still work on the
new key alone: a real target answers the probe only with the real credentials and records what the
channel test and the recovery webhook sent."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.security.serve_process import ROOT, admin_headers, guard_process

OLD, NEW, OTHER = "old-passphrase-for-tests", "new-passphrase-for-tests", "a-key-nobody-configured"
CHECK_SECRET, CHANNEL_SECRET, DEPLOY_SECRET = "s3cr3t-CHECK", "s3cr3t-CHANNEL-hmac-key", "s3cr3t-DEPLOY"
CONFIG = "security:\n  ssrf_allowlist: ['127.0.0.1/32']\n"


@contextmanager
def target() -> Iterator[tuple[str, list[dict]]]:
    """GET /health: 200 only with the check's credentials. POST anything: recorded."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            ok = self.headers.get("Authorization") == f"Bearer {CHECK_SECRET}"
            self.send_response(200 if ok else 401)
            self.end_headers()

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
            self.send_response(200)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def stored_tokens(db_url: str) -> list[str]:
    """Every ciphertext the database holds, read with plain SQL."""

    async def read() -> list[str]:
        engine = create_async_engine(db_url)
        try:
            async with engine.connect() as conn:
                channels = (await conn.execute(text("SELECT config_encrypted FROM channels"))).scalars().all()
                docs = (await conn.execute(text('SELECT "check", recovery FROM components'))).all()
        finally:
            await engine.dispose()
        tokens = list(channels)
        for row in docs:
            for doc in row:
                found: list[str] = []
                _walk(json.loads(doc) if isinstance(doc, str) else doc, found)
                tokens += found
        return tokens

    return asyncio.run(read())


def _walk(value, found: list[str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("secrets", "value_encrypted") and isinstance(item, str) and item.startswith("gAAAAA"):
                found.append(item)
            else:
                _walk(item, found)
    elif isinstance(value, list):
        for item in value:
            _walk(item, found)


def cli(db_url: str, tmp_path: Path, keys: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(
        {
            "PIPELINE_ENV": "test",
            "PIPELINE_DATABASE_URL": db_url,
            "PIPELINE_DATA_DIR": str(tmp_path / "var"),
            "PIPELINE_ENCRYPTION_KEY": keys,
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "app", "secrets", "rotate", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def wait_for(predicate, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def seed(base: str, url: str) -> None:
    headers = admin_headers(base)
    channel = httpx.post(
        f"{base}/api/v1/channels",
        headers=headers,
        json={
            "name": "hook",
            "kind": "webhook",
            "config": {"url": f"{url}/notify", "secret": CHANNEL_SECRET},
        },
        timeout=30,
    )
    assert channel.status_code == 201, channel.text
    component = httpx.post(
        f"{base}/api/v1/components",
        headers=headers,
        json={
            "name": "etl",
            "check": {
                "kind": "http",
                "url": f"{url}/health",
                "interval": 0.5,
                "headers": {"Authorization": f"Bearer {CHECK_SECRET}"},
            },
            "recovery": {
                "strategies": [
                    {
                        "kind": "webhook",
                        "url": f"{url}/deploy",
                        "headers": [{"name": "X-Deploy-Key", "value": DEPLOY_SECRET, "secret": True}],
                    }
                ],
                "cooldown": 0,
            },
        },
        timeout=30,
    )
    assert component.status_code == 201, component.text


def component_status(base: str, headers: dict) -> str:
    response = httpx.get(f"{base}/api/v1/components/etl", headers=headers, timeout=30)
    response.raise_for_status()
    return (response.json().get("state") or {}).get("status", "")


def test_rotation_moves_every_stored_secret_to_the_new_key_and_stops_on_one_it_cannot_open(db_url, tmp_path):
    with target() as (url, seen):
        with guard_process(db_url, tmp_path, CONFIG, PIPELINE_ENCRYPTION_KEY=OLD) as base:
            seed(base, url)
            headers = admin_headers(base)
            wait_for(lambda: component_status(base, headers) == "healthy", what="healthy on the old key")
        before = stored_tokens(db_url)
        assert len(before) == 3, before  # channel config, the check's sealed part, the deploy header

        dry = cli(db_url, tmp_path, f"{NEW},{OLD}", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "3 stored secrets: 3 on an older key, 0 on the newest" in dry.stdout
        assert stored_tokens(db_url) == before  # a dry run writes nothing

        done = cli(db_url, tmp_path, f"{NEW},{OLD}")
        assert done.returncode == 0, done.stderr
        assert "3 stored secrets: 3 re-encrypted with the newest key, 0 already on it" in done.stdout
        after = stored_tokens(db_url)
        assert len(after) == 3 and not set(after) & set(before)
        again = cli(db_url, tmp_path, NEW, "--dry-run")  # the new key alone opens every one of them
        assert again.returncode == 0, again.stderr
        assert "3 stored secrets: 0 on an older key, 3 on the newest" in again.stdout

        # The old key dropped: every secret still does its job.
        with guard_process(db_url, tmp_path, CONFIG, PIPELINE_ENCRYPTION_KEY=NEW) as base:
            headers = admin_headers(base)
            wait_for(lambda: component_status(base, headers) == "healthy", what="healthy on the new key")
            channel_id = httpx.get(f"{base}/api/v1/channels", headers=headers, timeout=30).json()["items"][0][
                "id"
            ]
            tested = httpx.post(f"{base}/api/v1/channels/{channel_id}/test", headers=headers, timeout=30)
            assert tested.status_code == 200, tested.text
            healed = httpx.post(f"{base}/api/v1/healing/etl", headers=headers, timeout=30)
            assert healed.status_code == 202, healed.text
            wait_for(lambda: any(s["path"] == "/deploy" for s in seen), what="the recovery webhook")
            wait_for(lambda: any(s["path"] == "/notify" for s in seen), what="the channel test")
        deploy = next(s for s in seen if s["path"] == "/deploy")
        assert deploy["headers"].get("X-Deploy-Key") == DEPLOY_SECRET
        notify = next(s for s in seen if s["path"] == "/notify")  # signed with the channel's secret
        signature = "sha256=" + hmac.new(CHANNEL_SECRET.encode(), notify["body"], hashlib.sha256).hexdigest()
        assert notify["headers"].get("X-Pipeline-Guard-Signature") == signature

    # A secret no configured key opens (the key it was written with is missing) stops the run, names
    # its rows, never echoes a token and changes nothing.
    written = stored_tokens(db_url)
    refused = cli(db_url, tmp_path, f"{OTHER},{OLD}")
    assert refused.returncode == 2
    assert "no configured encryption key opens" in refused.stderr
    assert "channel 'hook'" in refused.stderr and "component 'etl'" in refused.stderr
    assert not any(token in refused.stderr + refused.stdout for token in written)
    assert stored_tokens(db_url) == written
