"""Every `pipeline-guard ...` example in README.md and docs/*.md, run as written (by bash, with the
installed `pipeline-guard` script) against a running guard; any non-zero exit fails.

Only the placeholders in ``PLACEHOLDERS`` are substituted (host names that do not exist here, an alert
id); the files the examples name (components.yaml, recovery.yaml) are written by ``FILES``. Synopsis
blocks (```text) are not examples.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from live_guard import serve_guard

from app.auth.permissions import Role
from app.cli.bootstrap import create_user
from app.cli.serve_cmd import next_steps_text
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_FENCES = {"sh", "bash", "shell", "console"}
ADMIN_PASSWORD = "documented-admin-password"
AM_TOKEN = "doc-alertmanager-token"

FILES = {
    "components.yaml": "- name: batch-a\n  check: {kind: heartbeat, period: 1h}\n"
    "- name: batch-b\n  labels: {team: data}\n",
    "recovery.yaml": 'strategies:\n  - kind: restart\n    argv: ["true"]\nmax_attempts: 2\n',
}


def placeholders(url: str, hook: str, alert_id: int) -> dict[str, str]:
    """Documented value -> what it becomes here (hosts that do not exist on this machine, an id)."""
    return {
        "http://127.0.0.1:8080": url,
        "https://api.internal/health": "http://127.0.0.1:9/health",
        "https://grpc.internal/health": "http://127.0.0.1:9/grpc",
        "https://example.com/health": "http://127.0.0.1:9/example",
        "http://127.0.0.1:9000/health": "http://127.0.0.1:9/shop",
        "--host db.internal": "--host 127.0.0.1",
        "https://hooks.slack.com/services/T000/B000/XXXX": hook,
        "alerts ack 42": f"alerts ack {alert_id}",
    }


def documented_examples() -> list[tuple[str, int, str]]:
    """(file, line, command) for every `pipeline-guard` line of every shell block, continuations joined."""
    found = []
    for path in DOCS:
        fence: str | None = None
        pending: tuple[int, str] | None = None
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            stripped = line.strip()
            if stripped.startswith("```"):
                fence = None if fence is not None else (stripped[3:].strip() or "plain")
                continue
            if fence not in SHELL_FENCES:
                continue
            if pending is not None:
                start, text = pending
                text += " " + stripped.rstrip("\\").strip()
                pending = (start, text) if stripped.endswith("\\") else None
                if pending is None:
                    found.append((path.name, start, text))
                continue
            command = stripped.removeprefix("$ ")
            if command.startswith("pipeline-guard "):
                if command.endswith("\\"):
                    pending = (number, command.rstrip("\\").strip())
                else:
                    found.append((path.name, number, command))
    return found


def test_the_docs_have_examples_and_make_run_prints_documented_ones():
    examples = [command for _, _, command in documented_examples()]
    assert len(examples) >= 30
    printed = [
        line.split(":", 1)[1].strip()
        for line in next_steps_text("http://127.0.0.1:8080").splitlines()
        if "pipeline-guard " in line
    ]
    runnable = {re.sub(r"\s+#.*$", "", e).strip() for e in examples}
    assert printed and all(p in runnable for p in printed), set(printed) - runnable


@pytest.fixture
def doc_guard(db_url, tmp_path):
    settings = make_settings(
        db_url,
        tmp_path,
        security={"alertmanager_token": AM_TOKEN, "ssrf_allowlist": ["127.0.0.1/32"]},
        healing={"command_actions_enabled": True},
    )
    create_user(settings, "admin", ADMIN_PASSWORD, Role.ADMIN)
    with serve_guard(settings) as guard:
        yield guard


@pytest.mark.docs
@pytest.mark.timeout(900)  # ~40 CLI processes, each a fresh interpreter: minutes on a loaded machine
def test_every_documented_example_runs_against_a_running_guard(doc_guard, receiver, tmp_path):
    live = doc_guard
    httpx.post(
        f"{live.url}/api/v1/integrations/alertmanager",
        timeout=10,
        headers={"Authorization": f"Bearer {AM_TOKEN}"},
        json={
            "version": "4",
            "status": "firing",
            "receiver": "guard",
            "groupKey": "g",
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"alertname": "Down", "component": "api", "severity": "critical"},
                    "annotations": {"summary": "down"},
                    "startsAt": datetime.now(UTC).isoformat(),
                    "fingerprint": "doc",
                }
            ],
        },
    ).raise_for_status()
    token = live.token()
    alert_id = httpx.get(
        f"{live.url}/api/v1/alerts", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()["items"][0]["id"]
    workdir = tmp_path / "work"
    workdir.mkdir()
    for name, text in FILES.items():
        (workdir / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "PIPELINE_CLI_CONFIG_DIR": str(tmp_path / "cli"),
            "PIPELINE_URL": live.url,
            "PIPELINE_TOKEN": token,
            "PIPELINE_PASSWORD": ADMIN_PASSWORD,
            "PIPELINE_NEW_PASSWORD": "alice-password-12345",
            "PIPELINE_SECRET_KEY": "a-real-looking-secret-key-0123456789abcdef",
            "COLUMNS": "200",
        }
    )
    table = placeholders(live.url, receiver.url, alert_id)
    failures, ran = [], 0
    for source, line, command in documented_examples():
        for documented, here in table.items():
            command = command.replace(documented, here)
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        ran += 1
        if done.returncode != 0:
            failures.append(
                f"{source}:{line}: exit {done.returncode}: {command}\n  {done.stderr.strip()[:400]}"
            )
    print(f"ran {ran} documented examples")
    assert not failures, "\n".join(failures)
    assert ran == len(documented_examples())
