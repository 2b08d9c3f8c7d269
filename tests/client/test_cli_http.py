"""The HTTP CLI against a real guard on loopback (and a stub for endpoints still being built)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
from live_guard import envelope, free_port
from typer.testing import CliRunner

from app.cli import build_app


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_CLI_CONFIG_DIR", str(tmp_path / "cli-config"))
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
    result = cli("components", "add", "etl", "--check-kind", "http", "--check-url", "http://127.0.0.1:9/health",
                 "--interval", "30s", "--label", "region=eu", "--label", "team=data", "--critical")
    assert result.exit_code == 0, result.output
    spec = tmp_path / "more.yaml"
    spec.write_text("- name: train\n  check: {kind: heartbeat, period: 1h}\n- name: serve\n  labels: {team: ml}\n")
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

    assert cli("users", "add", "alice", "--role", "operator", "--password", "alice-password-123").exit_code == 0
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


def test_commands_for_endpoints_being_built(cli, stub):
    stub.script("GET", "/api/v1/status", (200, {"overall_health": "degraded", "components": [
        {"name": "etl", "status": "degraded", "last_check": "2024-01-01T00:00:00Z", "incident": {"id": 7}},
        {"name": "train"}]}))
    stub.script("GET", "/api/v1/alerts", (200, {"items": [{"id": 3, "state": "firing", "severity": "critical",
                                                           "component": "etl", "message": "down"}], "total": 1}))
    stub.script("POST", "/api/v1/alerts/3/ack", (404, envelope("not_found", "alert 3 not found")))
    common = ["--url", stub.url, "--token", "t"]
    result = cli("status", *common)
    assert result.exit_code == 0, result.output
    assert "degraded" in result.stdout and "train" in result.stdout and "7" in result.stdout
    assert "firing" in cli("alerts", "list", "--state", "firing", *common).stdout
    result = cli("alerts", "ack", "3", *common)
    assert result.exit_code == 1 and result.stderr.strip() == "error: alert 3 not found"
    assert cli("alerts", "resolve", "3", "--comment", "fixed", *common).exit_code == 0
    assert cli("silences", "add", "--component", "etl", "--duration", "2h", "--comment", "deploy", *common).exit_code == 0
    assert cli("silences", "expire", "5", *common).exit_code == 0
    assert cli("heal", "etl", "--strategy", "restart", *common).exit_code == 0
    assert cli("metrics", "record", "etl", "rows", "12", "-l", "stage=load", *common).exit_code == 0
    assert cli("metrics", "summary", "etl", "rows", "--since", "24h", *common).exit_code == 0
    assert cli("audit", "--limit", "5", *common).exit_code == 0
    shapes = [(r.method, r.path) for r in stub.requests]
    assert ("POST", "/api/v1/silences") in shapes and ("DELETE", "/api/v1/silences/5") in shapes
    assert ("POST", "/api/v1/healing/etl") in shapes and ("GET", "/api/v1/audit") in shapes
    silence = stub.calls("POST", "/api/v1/silences")[0].body
    assert silence["matchers"] == {"component": "etl"} and silence["comment"] == "deploy"
    record = stub.calls("POST", "/api/v1/metrics")[0].body
    assert record == {"component": "etl", "metric_name": "rows", "value": 12.0, "labels": {"stage": "load"}}
    assert stub.calls("POST", "/api/v1/healing/etl")[0].body == {"strategy": "restart"}


def test_python_dash_m_app_behaves_the_same(tmp_path):
    env = {**os.environ, "PIPELINE_CLI_CONFIG_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "app", "status", "--url", f"http://127.0.0.1:{free_port()}"],
                            check=False, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: cannot reach the guard") and "Traceback" not in result.stderr


def test_status_says_when_it_shows_one_page_of_a_larger_fleet(cli, stub):
    stub.script("GET", "/api/v1/status", (200, {"overall_health": "healthy", "total": 120, "limit": 50, "offset": 0,
                                                 "counts_by_status": {"healthy": 118, "critical": 2},
                                                 "components": [{"name": "etl", "status": "healthy"},
                                                                {"name": "train", "status": "healthy"}]}))
    result = cli("status", "--url", stub.url, "--token", "t")
    assert result.exit_code == 0, result.output
    assert "showing 2 of 120 components (critical 2, healthy 118)" in result.stdout
