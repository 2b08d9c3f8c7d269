"""The HTTP CLI against a real guard on loopback."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import httpx
import pytest
from live_guard import serve_guard
from typer.testing import CliRunner

from app.cli import build_app
from tests.ports import free_port


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_CLI_CONFIG_DIR", str(tmp_path / "cli-config"))
    monkeypatch.setenv("COLUMNS", "400")  # tables on one line each, so cells can be read back
    for name in ("PIPELINE_URL", "PIPELINE_TOKEN", "PIPELINE_PASSWORD", "PIPELINE_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()
    app = build_app()

    def run(*args: str, input: str | None = None):
        return runner.invoke(app, list(args), input=input, catch_exceptions=False)

    return run


def test_login_components_users_and_logout(cli, live, tmp_path):
    result = cli("login", "--url", live.url, "-u", live.username, "--password", live.password)
    assert result.exit_code == 0, result.output
    stored = tmp_path / "cli-config" / "credentials.json"
    assert stat.S_IMODE(os.stat(stored).st_mode) == 0o600
    assert json.loads(stored.read_text())["url"] == live.url

    # the stored login is used: no --url / --token from here on
    result = cli(
        "components",
        "add",
        "etl",
        "--check-kind",
        "http",
        "--check-url",
        "http://127.0.0.1:9/health",
        "--interval",
        "30s",
        "--label",
        "region=eu",
        "--label",
        "team=data",
        "--critical",
    )
    assert result.exit_code == 0, result.output
    spec = tmp_path / "more.yaml"
    spec.write_text(
        "- name: train\n  check: {kind: heartbeat, period: 1h}\n- name: serve\n  labels: {team: ml}\n"
    )
    assert cli("components", "add", "--from-file", str(spec)).exit_code == 0
    result = cli("components", "list", "--json")
    assert sorted(c["name"] for c in json.loads(result.stdout)["items"]) == ["etl", "serve", "train"]
    result = cli("components", "list", "--label", "team=data")
    assert "etl" in result.stdout and "train" not in result.stdout
    assert cli("components", "disable", "etl").exit_code == 0
    shown = json.loads(cli("components", "show", "etl", "--json").stdout)
    assert shown["enabled"] is False and shown["critical"] is True and shown["check"]["interval"] == 30.0
    assert cli("components", "enable", "etl").exit_code == 0
    assert cli("components", "remove", "serve", "--yes").exit_code == 0

    result = cli("components", "show", "serve")
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error: ") and "serve" in result.stderr
    assert "Traceback" not in result.output

    result = cli("components", "add", "etl")
    assert result.exit_code == 1 and "error:" in result.stderr  # 409 conflict, one line

    result = cli("status")  # no status API yet on this branch: falls back to the registry
    assert result.exit_code == 0, result.output
    assert "etl" in result.stdout and "train" in result.stdout

    assert (
        cli("users", "add", "alice", "--role", "operator", "--password", "alice-password-123").exit_code == 0
    )
    assert cli("users", "role", "alice", "viewer").exit_code == 0
    assert cli("users", "disable", "alice").exit_code == 0
    users = {u["username"]: u for u in json.loads(cli("users", "list", "--json").stdout)["items"]}
    assert users["alice"]["role"] == "viewer" and users["alice"]["disabled"] is True

    result = cli("users", "add", "bob", "--password", "short")
    assert result.exit_code == 2 and "password" in result.stderr  # validation -> 2

    assert cli("logout").exit_code == 0
    assert not stored.exists()
    result = cli("components", "list", "--url", live.url)
    assert result.exit_code == 1 and "login" in result.stderr


def test_bad_login_and_unreachable_guard(cli, live):
    result = cli("login", "--url", live.url, "-u", live.username, "--password", "wrong-password-123")
    assert result.exit_code == 1 and result.stderr.startswith("error: ")
    result = cli("status", "--url", f"http://127.0.0.1:{free_port()}")
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error: cannot reach the guard")
    result = cli("components", "list", "--label", "nokey", "--url", live.url)
    assert result.exit_code == 2


def test_token_option_and_env(cli, live, monkeypatch):
    token = live.token()
    assert cli("components", "list", "--url", live.url, "--token", token).exit_code == 0
    monkeypatch.setenv("PIPELINE_URL", live.url)
    monkeypatch.setenv("PIPELINE_TOKEN", token)
    assert cli("users", "list").exit_code == 0


@pytest.fixture
def am_live(db_url, tmp_path):
    from tests.conftest import make_settings

    settings = make_settings(
        db_url, tmp_path, security={"alertmanager_token": "am-token", "ssrf_allowlist": ["127.0.0.1/32"]}
    )
    with serve_guard(settings) as guard:
        yield guard


def test_every_http_command_against_a_running_guard(cli, am_live, receiver):
    live = am_live
    common = ["--url", live.url, "--token", live.token()]

    def ok(*args: str) -> str:
        result = cli(*args, *common)
        assert result.exit_code == 0, (args, result.output)
        return result.stdout

    # components of every kind from options, with the API's own reasons when one is wrong
    ok(
        "components",
        "add",
        "web",
        "--check-kind",
        "http",
        "--check-url",
        "http://127.0.0.1:9/health",
        "--timeout",
        "2s",
        "--failure-threshold",
        "2",
        "--success-threshold",
        "1",
        "-p",
        "expected_status=[200, 204]",
    )
    ok("components", "add", "db", "--check-kind", "tcp", "--host", "127.0.0.1", "--port", "5432")
    recovery = live.settings.data_dir / "recovery.yaml"
    recovery.parent.mkdir(parents=True, exist_ok=True)
    recovery.write_text("strategies: [{kind: notify_only}]\nmax_attempts: 2\n")
    ok(
        "components",
        "add",
        "nightly",
        "--check-kind",
        "heartbeat",
        "--period",
        "1h",
        "--grace",
        "5m",
        "--recovery-file",
        str(recovery),
    )
    shown = {c["name"]: c for c in json.loads(ok("components", "list", "--json"))["items"]}
    assert shown["web"]["check"]["failure_threshold"] == 2
    assert shown["web"]["check"]["expected_status"] == [[200, 200], [204, 204]]
    assert shown["db"]["check"]["port"] == 5432 and shown["nightly"]["check"]["period_s"] == 3600
    assert shown["nightly"]["recovery"]["max_attempts"] == 2
    result = cli("components", "add", "broken", "--check-kind", "heartbeat", *common)
    assert result.exit_code == 2
    assert "period_s: is required" in result.stderr, result.stderr  # the API's detail, not just its headline

    # metrics: the documented summary and analysis
    for value in (95, 100, 105, 110, 115, 118, 120, 400):
        ok("metrics", "record", "web", "latency_ms", str(value))
    out = ok("metrics", "summary", "web", "latency_ms", "--since", "24h")
    assert "400" in out and "8" in out
    summary = json.loads(ok("metrics", "summary", "web", "latency_ms", "--since", "24h", "--json"))
    assert summary["count"] == 8 and summary["max"] == 400
    analysis = json.loads(ok("metrics", "analyze", "web", "--json"))
    assert analysis["series"][0]["count"] == 8 and analysis["series"][0]["latest"] == 400
    ok("metrics", "baselines")
    ok("metrics", "latest", "web")
    ok("metrics", "query", "--component", "web", "--metric", "latency_ms", "--limit", "3")

    # an alert (from Alertmanager), acknowledged and resolved; a silence added and expired
    httpx.post(
        f"{live.url}/api/v1/integrations/alertmanager",
        timeout=10,
        headers={"Authorization": "Bearer am-token"},
        json={
            "version": "4",
            "status": "firing",
            "receiver": "guard",
            "groupKey": "g",
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"alertname": "Down", "component": "web", "severity": "critical"},
                    "annotations": {"summary": "down"},
                    "startsAt": "2024-01-01T00:00:00Z",
                    "fingerprint": "f1",
                }
            ],
        },
    ).raise_for_status()
    alerts = json.loads(ok("alerts", "list", "--state", "firing", "--json"))["items"]
    assert [a["component"] for a in alerts] == ["web"]
    table = ok("alerts", "list")
    assert "firing" in table and "web" in table
    ok("alerts", "ack", str(alerts[0]["id"]), "--until", "2h", "--comment", "looking")
    ok("alerts", "resolve", str(alerts[0]["id"]), "--comment", "restarted")
    assert (
        json.loads(ok("alerts", "list", "--state", "resolved", "--json"))["items"][0]["status"] == "resolved"
    )
    out = ok("silences", "add", "--component", "web", "--duration", "30m", "--comment", "deploy")
    silence_id = out.split()[1]
    listed = ok("silences", "list")
    assert "web" in listed and "deploy" in listed
    ok("silences", "expire", silence_id)
    assert json.loads(ok("silences", "list", "--json"))["items"] == []

    # channels
    ok(
        "channels",
        "add",
        "ops",
        "--kind",
        "webhook",
        "--webhook-url",
        receiver.url,
        "--severity",
        "critical",
        "-m",
        "team=data",
    )
    channels = json.loads(ok("channels", "list", "--json"))["items"]
    assert [(c["name"], c["severities"], c["matchers"]) for c in channels] == [
        ("ops", ["critical"], {"team": "data"})
    ]
    assert "delivered" in ok("channels", "test", "ops") and len(receiver.received) == 1
    ok("channels", "disable", "ops")
    ok("channels", "remove", "ops", "--yes")

    # healing refused with the API's reason; status; the audit log shows who, from where, with what result
    result = cli("heal", "nightly", "--strategy", "restart", *common)
    assert result.exit_code == 1 and "restart" in result.stderr  # a conflict with the component's state
    assert "web" in ok("status")
    audit = ok("audit", "--since", "1h", "--actor", live.username)
    assert "127.0.0.1" in audit and "201" in audit


def test_python_dash_m_app_behaves_the_same(tmp_path):
    env = {**os.environ, "PIPELINE_CLI_CONFIG_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "app", "status", "--url", f"http://127.0.0.1:{free_port()}"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip().startswith("error: cannot reach the guard") and "Traceback" not in result.stderr
    )


def test_metrics_baselines_shows_the_learned_baseline(cli, settings):
    """A guard whose rule evaluator runs: the table shows the median/spread the API returns, not "-"."""
    import time

    from live_guard import ADMIN_PASSWORD, ADMIN_USER, serve_app

    from app.auth.permissions import Role
    from app.cli.bootstrap import create_user
    from app.main import create_app

    def evaluator_only(rt):
        # The evaluator writes a baseline 30 s after its series' first point by default; this guard
        # writes it at its next pass, so the table is read as soon as the batch is evaluated.
        rt.detection.evaluator.persist_every = 0.0
        return [rt.detection.evaluator]

    create_user(settings, ADMIN_USER, ADMIN_PASSWORD, Role.ADMIN)
    app = create_app(settings, build_services=evaluator_only)
    with serve_app(app) as url:
        token = httpx.post(
            f"{url}/api/v1/auth/token", data={"username": ADMIN_USER, "password": ADMIN_PASSWORD}, timeout=10
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        rule = {
            "name": "latency",
            "component": "web",
            "metric_name": "latency_ms",
            "kind": "anomaly",
            "params": {"sensitivity": 0.5},
            "severity": "warning",
        }
        assert httpx.post(f"{url}/api/v1/rules", json=rule, headers=headers, timeout=10).status_code == 201
        points = [
            {"component": "web", "metric_name": "latency_ms", "value": 100.0 + (i % 5)} for i in range(50)
        ]
        assert (
            httpx.post(f"{url}/api/v1/metrics/batch", json=points, headers=headers, timeout=10).status_code
            == 201
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = httpx.get(f"{url}/api/v1/metrics/baselines", headers=headers, timeout=10).json()
            if found and found[0]["baseline"].get("count") == 50:
                break
            time.sleep(0.2)
        assert found and found[0]["baseline"]["count"] == 50, found
        auth = ("--url", url, "--token", token)
        result = cli("metrics", "baselines", "--component", "web", "--metric", "latency_ms", *auth)
        assert result.exit_code == 0, result.output
        row = next(line for line in result.stdout.splitlines() if "latency_ms" in line)
        cells = [c.strip() for c in row.strip("│ ").split("│")]
        assert cells[:4] == ["web", "latency_ms", "-", "latency"]
        assert cells[4] == str(found[0]["baseline"]["median"]) and cells[5] == str(
            found[0]["baseline"]["spread"]
        )
        assert cells[8] == "50"
        assert cli("metrics", "baselines", "--metric", "nope", *auth).stderr.strip() == "(none)"


def test_status_says_when_it_shows_one_page_of_a_larger_fleet(cli, stub):
    stub.script(
        "GET",
        "/api/v1/status",
        (
            200,
            {
                "overall_health": "healthy",
                "total": 120,
                "limit": 50,
                "offset": 0,
                "counts_by_status": {"healthy": 118, "critical": 2},
                "components": [{"name": "etl", "status": "healthy"}, {"name": "train", "status": "healthy"}],
            },
        ),
    )
    result = cli("status", "--url", stub.url, "--token", "t")
    assert result.exit_code == 0, result.output
    assert "showing 2 of 120 components (critical 2, healthy 118)" in result.stdout
