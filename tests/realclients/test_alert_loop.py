"""The shipped Prometheus rules and Alertmanager config, run for real around a guard: a component the
guard reports down fires `PipelineGuardComponentDown`, which Alertmanager does not send back to the
guard (one outage, one guard alert); an alert from elsewhere still reaches the guard's receiver.

The shipped files are used as they are, except for the substitutions listed in the test (addresses
that exist only in docker-compose, the credentials file, and shorter waits)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml

from tests.ports import free_port
from tests.realclients.conftest import require_binary, start_guard, stop_guard
from tests.realclients.loopback import Target, daemon, guard_config, wait_for

pytestmark = pytest.mark.realclients

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "alert-loop-shared-token-0123456789"


def shipped(path: str, substitutions: dict[str, str]) -> str:
    text = (ROOT / path).read_text()
    for old, new in substitutions.items():
        assert old in text, f"{path} no longer contains {old!r}"
        text = text.replace(old, new)
    return text


def _guard_alerts(guard, headers, component: str) -> list[dict]:
    return httpx.get(
        f"{guard.url}/api/v1/alerts",
        params={"component": component, "limit": 100, "status": "all"},
        headers=headers,
        timeout=5,
    ).json()["items"]


def test_the_guard_own_alerts_do_not_come_back_through_alertmanager(tmp_path):
    prometheus, alertmanager = require_binary("prometheus"), require_binary("prometheus-alertmanager")
    with Target() as target:
        guard = start_guard(
            tmp_path, extra_env={"PIPELINE_ALERTMANAGER_TOKEN": TOKEN}, config_text=guard_config(target)
        )
        try:
            headers = guard.headers()
            token_file = tmp_path / "guard-token"
            token_file.write_text(TOKEN)
            am_port, prom_port = free_port(), free_port()
            am, prom = f"http://127.0.0.1:{am_port}", f"http://127.0.0.1:{prom_port}"
            (tmp_path / "alertmanager.yml").write_text(
                shipped(
                    "deploy/alertmanager/alertmanager.yml",
                    {
                        "http://guard-api:8080": guard.url,
                        "/alertmanager/guard-token": str(token_file),
                        "group_wait: 10s": "group_wait: 1s",
                        "group_interval: 1m": "group_interval: 1s",
                    },
                )
            )
            rules_dir = tmp_path / "rules"
            rules_dir.mkdir()
            (rules_dir / "pipeline_guard.rules.yml").write_text(
                shipped("deploy/prometheus/rules/pipeline_guard.rules.yml", {"for: 2m": "for: 2s"})
            )
            prom_config = yaml.safe_load(
                shipped(
                    "deploy/prometheus/prometheus.yml",
                    {
                        "scrape_interval: 30s": "scrape_interval: 1s",
                        "evaluation_interval: 30s": "evaluation_interval: 1s",
                        "scrape_timeout: 10s": "scrape_timeout: 1s",
                        '"alertmanager:9093"]': f'"127.0.0.1:{am_port}"]',
                        '["guard:8080", "guard-2:8080"]': f'["{guard.url.removeprefix("http://")}"]',
                    },
                )
            )
            prom_config["rule_files"] = [str(rules_dir / "*.rules.yml")]
            (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prom_config))
            am_args = [
                alertmanager,
                f"--config.file={tmp_path / 'alertmanager.yml'}",
                f"--storage.path={tmp_path / 'am'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
            ]
            prom_args = [
                prometheus,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ]
            with (
                daemon(am_args, tmp_path / "alertmanager.log"),
                daemon(prom_args, tmp_path / "prometheus.log"),
            ):
                wait_for(
                    "alertmanager ready", lambda: httpx.get(f"{am}/-/ready", timeout=2).status_code == 200
                )
                wait_for(
                    "prometheus ready", lambda: httpx.get(f"{prom}/-/ready", timeout=2).status_code == 200
                )

                def component_down_in_alertmanager():
                    alerts = httpx.get(
                        f"{am}/api/v2/alerts",
                        params={"filter": 'alertname="PipelineGuardComponentDown"'},
                        timeout=5,
                    ).json()
                    return [a for a in alerts if a["labels"].get("component") == "feature-store"]

                (down,) = wait_for(
                    "PipelineGuardComponentDown for feature-store",
                    component_down_in_alertmanager,
                    timeout=120,
                )
                assert [r["name"] for r in down["receivers"]] == ["operators"]

                # An alert from elsewhere goes to the guard, after the same group wait as the one above.
                other = {
                    "labels": {"alertname": "ApiLatencyHigh", "component": "api", "severity": "warning"},
                    "annotations": {"summary": "api slow"},
                    "startsAt": datetime.now(UTC).isoformat(),
                }
                assert httpx.post(f"{am}/api/v2/alerts", json=[other], timeout=10).status_code == 200
                wait_for(
                    "the guard to receive the other alert",
                    lambda: [
                        a for a in _guard_alerts(guard, headers, "api") if a["source"] == "alertmanager"
                    ],
                    timeout=60,
                )

                # One outage, one alert: the guard's own; none echoed back by Alertmanager.
                alerts = _guard_alerts(guard, headers, "feature-store")
                assert [a["source"] for a in alerts] == ["monitoring"], alerts
        finally:
            stop_guard(guard)
