"""A real Alertmanager posts to the guard's receiver: an injected alert for a registered component
opens a guard alert; the same alert ended in the past (resolved) resolves it. Authenticated with
`http_config.authorization.credentials` = PIPELINE_ALERTMANAGER_TOKEN."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import yaml

from tests.ports import free_port
from tests.realclients.conftest import require_binary, start_guard, stop_guard
from tests.realclients.loopback import Target, daemon, guard_config, wait_for

pytestmark = pytest.mark.realclients

TOKEN = "alertmanager-shared-token-0123456789"


def _alertmanager_config(guard_url: str, token: str) -> str:
    return yaml.safe_dump(
        {
            "route": {
                "receiver": "pipeline-guard",
                "group_by": ["alertname", "component"],
                "group_wait": "1s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [
                {
                    "name": "pipeline-guard",
                    "webhook_configs": [
                        {
                            "url": f"{guard_url}/api/v1/integrations/alertmanager",
                            "send_resolved": True,
                            "http_config": {"authorization": {"type": "Bearer", "credentials": token}},
                        }
                    ],
                }
            ],
        }
    )


@contextlib.contextmanager
def _alertmanager(tmp_path, guard_url: str, token: str) -> Iterator[str]:
    """A real Alertmanager routing every alert to the guard's receiver with ``token``; yields its URL
    once it is ready. Its log is ``tmp_path / "alertmanager.log"``."""
    alertmanager = require_binary("prometheus-alertmanager")
    port = free_port()
    am = f"http://127.0.0.1:{port}"
    config = tmp_path / "alertmanager.yml"
    config.write_text(_alertmanager_config(guard_url, token))
    args = [
        alertmanager,
        f"--config.file={config}",
        f"--storage.path={tmp_path / 'am'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    with daemon(args, tmp_path / "alertmanager.log"):
        wait_for(
            "alertmanager ready", lambda: httpx.get(f"{am}/-/ready", timeout=2).status_code == 200, timeout=60
        )
        yield am


def _am_alerts(guard, headers) -> list[dict]:
    items = httpx.get(
        f"{guard.url}/api/v1/alerts",
        params={"component": "api", "limit": 100, "status": "all"},
        headers=headers,
        timeout=5,
    ).json()["items"]
    return [a for a in items if a["source"] == "alertmanager"]


def test_alertmanager_alert_opens_and_resolves_guard_alert(tmp_path):
    with Target() as target:
        guard = start_guard(
            tmp_path, extra_env={"PIPELINE_ALERTMANAGER_TOKEN": TOKEN}, config_text=guard_config(target)
        )
        try:
            headers = guard.headers()
            with _alertmanager(tmp_path, guard.url, TOKEN) as am:
                amtool = require_binary("amtool")
                checked = subprocess.run(
                    [amtool, "check-config", str(tmp_path / "alertmanager.yml")],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
                assert checked.returncode == 0, checked.stdout + checked.stderr
                starts = datetime.now(UTC) - timedelta(seconds=5)
                alert = {
                    "labels": {"alertname": "ApiLatencyHigh", "component": "api", "severity": "critical"},
                    "annotations": {"summary": "api p95 latency above 2s"},
                    "startsAt": starts.isoformat(),
                    "generatorURL": "http://127.0.0.1/graph",
                }
                r = httpx.post(f"{am}/api/v2/alerts", json=[alert], timeout=10)
                assert r.status_code == 200, r.text

                opened = wait_for(
                    "the guard to open the Alertmanager alert",
                    lambda: [a for a in _am_alerts(guard, headers) if a["status"] == "firing"],
                    timeout=60,
                )
                assert len(opened) == 1
                got = opened[0]
                assert got["component"] == "api" and got["severity"] == "critical"
                assert got["message"] == "api p95 latency above 2s"
                assert got["fingerprint"].startswith("am:")

                ended = {**alert, "endsAt": (datetime.now(UTC) - timedelta(seconds=1)).isoformat()}
                r = httpx.post(f"{am}/api/v2/alerts", json=[ended], timeout=10)
                assert r.status_code == 200, r.text

                resolved = wait_for(
                    "the guard to resolve it",
                    lambda: [
                        a
                        for a in _am_alerts(guard, headers)
                        if a["id"] == got["id"] and a["status"] == "resolved"
                    ],
                    timeout=60,
                )
                assert "Alertmanager" in (resolved[0].get("resolution_action") or "")
                # The receiver authenticated Alertmanager and audited both calls under its own name.
                audit = httpx.get(
                    f"{guard.url}/api/v1/audit", params={"limit": 100}, headers=headers, timeout=5
                )
                assert audit.status_code == 200, audit.text
                am_rows = [
                    x for x in audit.json()["items"] if x["path"] == "/api/v1/integrations/alertmanager"
                ]
                assert len(am_rows) >= 2 and all(x["status_code"] == 200 for x in am_rows), am_rows
                assert {x["username"] for x in am_rows} == {"alertmanager"}, am_rows
        finally:
            stop_guard(guard)


def test_alertmanager_without_the_token_is_refused(tmp_path):
    """The same Alertmanager with a wrong token: the guard answers 401 and opens nothing."""
    with Target() as target:
        guard = start_guard(
            tmp_path, extra_env={"PIPELINE_ALERTMANAGER_TOKEN": TOKEN}, config_text=guard_config(target)
        )
        try:
            headers = guard.headers()
            with _alertmanager(tmp_path, guard.url, "wrong-token-wrong-token-wrong") as am:
                alert = {"labels": {"alertname": "Nope", "component": "api", "severity": "critical"}}
                assert httpx.post(f"{am}/api/v2/alerts", json=[alert], timeout=10).status_code == 200
                log = tmp_path / "alertmanager.log"
                wait_for(
                    "Alertmanager to report the refused notification",
                    lambda: "401" in log.read_text(),
                    timeout=60,
                )
                assert _am_alerts(guard, headers) == []
        finally:
            stop_guard(guard)
