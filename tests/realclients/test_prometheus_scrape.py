"""A real Prometheus scrapes a real guard on loopback: `pipeline_guard_component_health` has the right
values, and every Grafana panel's expression returns data. The guard is driven through the paths the
panels show: a failing component whose notify_only healing exhausts and opens its breaker, a component
healed by a webhook (verified success, time to recover), a notification channel on a loopback receiver,
API traffic. `promtool check metrics` passes on the live /metrics."""

from __future__ import annotations

import subprocess

import httpx
import pytest
import yaml

from tests.deploy.grafana_exprs import panel_exprs
from tests.ports import free_port
from tests.realclients.conftest import require_binary, start_guard, stop_guard
from tests.realclients.loopback import Target, daemon, guard_config, wait_for

pytestmark = pytest.mark.realclients

# Panels that cannot have data on this code base, with the reason. The test also asserts they are
# still empty, so whoever adds the feature is told to take the panel off this list.
# Panels that cannot have data in this test, with the reason (none today: every panel is exercised).
EMPTY_BY_DESIGN: dict[str, str] = {}


def _config(target: Target) -> str:
    config = yaml.safe_load(
        guard_config(
            target,
            recovery={
                "strategies": [{"kind": "notify_only", "message": "feature team"}],
                "max_attempts": 1,
                "breaker_threshold": 1,
            },
            security={"ssrf_allowlist": ["127.0.0.1"]},
        )
    )
    config["components"].append(
        {
            "name": "trainer",
            "labels": {"app": "trainer"},
            "check": {"kind": "http", "url": f"{target.base}/toggle", "interval": "1s"},
            "recovery": {
                "strategies": [{"kind": "webhook", "url": f"{target.base}/heal", "method": "POST"}],
                "max_attempts": 2,
                "backoff_initial": 1,
            },
        }
    )
    return yaml.safe_dump(config, sort_keys=False)


def _query(prom: str, expr: str) -> list[dict]:
    r = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", f"{expr}: {r.status_code} {body}"
    return body["data"]["result"]


def _prometheus_config(guard_url: str) -> str:
    target = guard_url.removeprefix("http://")
    return yaml.safe_dump(
        {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                {
                    "job_name": "pipeline-guard",
                    "metrics_path": "/metrics",
                    "static_configs": [{"targets": [target]}],
                }
            ],
        }
    )


def test_prometheus_scrapes_guard_and_every_panel_has_data(tmp_path):
    prometheus = require_binary("prometheus")
    promtool = require_binary("promtool")
    with Target() as target:
        guard = start_guard(tmp_path, config_text=_config(target))
        try:
            headers = guard.headers()
            r = httpx.post(
                f"{guard.url}/api/v1/channels",
                headers=headers,
                timeout=10,
                json={"name": "ops-webhook", "kind": "webhook", "config": {"url": f"{target.base}/notify"}},
            )
            assert r.status_code == 201, r.text
            target.toggle_ok = False  # trainer goes down now; its webhook strategy heals it

            def healed():
                attempts = httpx.get(
                    f"{guard.url}/api/v1/healing/attempts",
                    params={"component": "trainer"},
                    headers=headers,
                    timeout=5,
                ).json()["items"]
                return any(a["state"] == "succeeded" for a in attempts)

            wait_for("trainer healed by its webhook strategy", healed, timeout=90)
            wait_for(
                "a notification delivered to the loopback channel",
                lambda: any(x["path"] == "/notify" for x in target.received),
                timeout=30,
            )

            port = free_port()
            prom = f"http://127.0.0.1:{port}"
            config = tmp_path / "prometheus.yml"
            config.write_text(_prometheus_config(guard.url))
            args = [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
            ]
            with daemon(args, tmp_path / "prometheus.log"):
                wait_for(
                    "prometheus ready",
                    lambda: httpx.get(f"{prom}/-/ready", timeout=2).status_code == 200,
                    timeout=60,
                )

                def health():
                    result = _query(prom, "pipeline_guard_component_health")
                    values = {s["metric"].get("component"): float(s["value"][1]) for s in result}
                    ok = (
                        values.get("api") == 1
                        and values.get("feature-store") == 0
                        and values.get("trainer") == 1
                    )
                    assert all(s["metric"]["job"] == "pipeline-guard" for s in result)
                    return values if ok else None

                values = wait_for("pipeline_guard_component_health from the scrape", health, timeout=60)
                assert values["feature-store"] == 0.0

                # Generate some API traffic for the handler panels and metric points for the ingest
                # panel, then wait for every panel.
                for i in range(5):
                    httpx.get(f"{guard.url}/api/v1/status", headers=headers, timeout=5)
                    r = httpx.post(
                        f"{guard.url}/api/v1/metrics/batch",
                        headers=headers,
                        timeout=10,
                        json={
                            "points": [
                                {"component": "trainer", "metric_name": "loss", "value": 1.0 / (i + 1)}
                            ]
                        },
                    )
                    assert r.status_code == 201, r.text
                panels = panel_exprs()
                assert {title for title, _ in panels} >= set(EMPTY_BY_DESIGN)
                pending = {expr: title for title, expr in panels if title not in EMPTY_BY_DESIGN}

                def all_have_data():
                    for expr in list(pending):
                        if _query(prom, expr):
                            del pending[expr]
                    return not pending or None

                try:
                    wait_for("every Grafana panel to return data", all_have_data, timeout=90, every=2)
                except AssertionError:
                    pytest.fail("panels without data: " + "; ".join(f"{t}: {e}" for e, t in pending.items()))

                for title, expr in panels:
                    if title in EMPTY_BY_DESIGN:
                        assert _query(prom, expr) == [], (
                            f"panel {title!r} has data now: remove it from EMPTY_BY_DESIGN"
                        )
                # The breaker panel shows the open breaker, not just the `or vector(0)` fallback.
                breakers = _query(
                    prom, 'max by (component) (pipeline_guard_circuit_open{job="pipeline-guard"})'
                )
                assert {s["metric"]["component"]: s["value"][1] for s in breakers}.get("feature-store") == "1"

            text = httpx.get(f"{guard.url}/metrics", timeout=10).text
            check = subprocess.run(
                [promtool, "check", "metrics"],
                input=text,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), (
                check.stdout + check.stderr
            )
        finally:
            stop_guard(guard)
