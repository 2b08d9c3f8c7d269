"""``alerting.default_language`` is the catalog of every channel that names none: declared in the
config file, created over the API or with the CLI. A real ``serve`` reads the YAML the way a user
writes it; both dialects. An unknown language, or the removed ``compliance.standards``, stops
``config validate`` with the key named."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import TEST_PASSWORD
from tests.security.serve_process import guard_process

ROOT = Path(__file__).resolve().parents[2]


def guard_env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    return {**clean, "PIPELINE_CLI_CONFIG_DIR": os.devnull, **extra}


def config_text(hook_url: str, *, default_language: str = "de") -> str:
    return f"""
alerting:
  default_language: {default_language}
security:
  ssrf_allowlist: [127.0.0.1/32]
  rate_limiting: {{enabled: false}}
channels:
  - name: team-hook
    kind: webhook
    config: {{url: "{hook_url}/team"}}
  - name: ops-fr
    kind: webhook
    language: fr
    config: {{url: "{hook_url}/ops"}}
"""


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=guard_env(),
        cwd=ROOT,
        check=False,
    )


async def test_channels_without_a_language_take_the_default(db_url, tmp_path, receiver):
    with guard_process(db_url, tmp_path, config=config_text(receiver.url)) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            deadline = time.monotonic() + 60
            token = (
                await http.post("/api/v1/auth/token", data={"username": "admin", "password": TEST_PASSWORD})
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}

            async def languages() -> dict[str, str]:
                r = await http.get("/api/v1/channels", headers=headers)
                assert r.status_code == 200, r.text
                return {c["name"]: c["language"] for c in r.json()["items"]}

            while {"team-hook", "ops-fr"} - set(await languages()):  # declared ones are synced at start
                assert time.monotonic() < deadline, await languages()
                await asyncio.sleep(0.1)

            r = await http.post(
                "/api/v1/channels",
                headers=headers,
                json={"name": "api-hook", "kind": "webhook", "config": {"url": f"{receiver.url}/api"}},
            )
            assert r.status_code == 201, r.text
            r = await http.post(
                "/api/v1/channels",
                headers=headers,
                json={"name": "api-en", "kind": "webhook", "language": "en", "config": {"url": receiver.url}},
            )
            assert r.status_code == 201, r.text
            r = await http.post(
                "/api/v1/channels",
                headers=headers,
                json={"name": "api-xx", "kind": "webhook", "language": "xx", "config": {"url": receiver.url}},
            )
            assert r.status_code == 422 and "language" in r.text, r.text

            done = await asyncio.to_thread(
                cli, "channels", "add", "cli-hook", "--webhook-url", f"{receiver.url}/cli",
                "--url", base, "--token", token,
            )  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr

            assert await languages() == {
                "team-hook": "de",
                "ops-fr": "fr",
                "api-hook": "de",
                "api-en": "en",
                "cli-hook": "de",
            }

            # ... and the messages are written in it.
            listed = (await http.get("/api/v1/channels", headers=headers)).json()["items"]
            ids = {c["name"]: c["id"] for c in listed}
            r = await http.post(f"/api/v1/channels/{ids['team-hook']}/test", headers=headers)
            assert r.status_code == 200 and r.json()["delivered"], r.text
            sent = [json.loads(q["body"]) for q in receiver.requests if q["path"] == "/team"]
            assert sent and sent[-1]["language"] == "de", sent


def test_config_validate_names_a_bad_language_and_the_removed_standards(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(config_text("http://127.0.0.1:9", default_language="klingon"))
    done = cli("config", "validate", str(bad))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "alerting.default_language" in done.stderr and "en, " in done.stderr, done.stderr

    declared = tmp_path / "declared.yaml"
    declared.write_text(
        "channels:\n  - name: x\n    kind: webhook\n    language: xx\n    config: {url: 'http://127.0.0.1:9'}\n"
    )
    done = cli("config", "validate", str(declared))
    assert done.returncode == 2 and "language" in done.stderr, done.stdout + done.stderr

    old = tmp_path / "old.yaml"
    old.write_text("compliance:\n  standards: [soc2]\n  audit_logging: true\n")
    done = cli("config", "validate", str(old))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "compliance" in done.stderr and "standards" in done.stderr and "remove it" in done.stderr
