"""``with client.maintenance("etl", "30m"):`` and ``pipeline-guard maintenance …`` against a real guard."""

from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from app.cli import build_app
from app.client import AsyncGuardClient, GuardAPIError, GuardClient


def windows(live, token):
    r = httpx.get(f"{live.url}/api/v1/silences", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    r.raise_for_status()
    return r.json()["items"]


def test_sdk_opens_and_closes_a_window_around_the_block(live):
    admin = live.token()
    with GuardClient(live.url, admin, raise_errors=True, flush_interval=0) as guard:
        guard.create_component({"name": "etl", "check": {"kind": "heartbeat", "period": "1h"}})
        ping = guard.request("POST", "/api/v1/components/etl/ping-token")["token"]
        guard.create_user("etl-bot", "etl-bot-password-1", "ingest")

    # the pipeline itself, with only its ping token
    with (
        GuardClient(live.url, raise_errors=True, flush_interval=0) as pipeline,
        pytest.raises(RuntimeError),
        pipeline.maintenance("etl", "30m", ping_token=ping) as window,
    ):
        [open_one] = windows(live, admin)
        assert open_one["id"] == window.window["id"] and open_one["active"] is True
        assert open_one["component"] == "etl" and open_one["duration_seconds"] is None
        raise RuntimeError("the block's own error propagates")
    assert windows(live, admin) == []  # closed on the way out

    # an ingest-only user may not silence anything; an operator token may
    with (
        GuardClient(
            live.url, username="etl-bot", password="etl-bot-password-1", raise_errors=True, flush_interval=0
        ) as bot,
        pytest.raises(GuardAPIError) as caught,
        bot.maintenance("etl", 60),
    ):
        pass
    assert caught.value.status == 403
    with GuardClient(live.url, admin, flush_interval=0) as guard, guard.maintenance("etl", 60) as window:
        assert window.window["window_ends_at"]


async def test_async_sdk_window(live):
    admin = live.token()
    async with AsyncGuardClient(live.url, admin, raise_errors=True, flush_interval=0) as guard:
        await guard.create_component({"name": "train"})
        async with guard.maintenance("train", "10m", comment="retraining") as window:
            assert window.window["comment"] == "retraining"
            assert [w["component"] for w in windows(live, admin)] == ["train"]
    assert windows(live, admin) == []


def test_cli_maintenance_commands(live, tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_CLI_CONFIG_DIR", str(tmp_path / "cli"))
    monkeypatch.setenv("PIPELINE_URL", live.url)
    monkeypatch.setenv("PIPELINE_TOKEN", live.token())
    runner, app = CliRunner(), build_app()

    def cli(*args):
        result = runner.invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result

    httpx.post(
        f"{live.url}/api/v1/components",
        json={"name": "etl"},
        timeout=10,
        headers={"Authorization": f"Bearer {live.token()}"},
    ).raise_for_status()
    added = json.loads(
        cli(
            "maintenance",
            "add",
            "nightly",
            "--schedule",
            "0 3 * * *",
            "--tz",
            "Asia/Tokyo",
            "--duration",
            "45m",
            "--component",
            "warehouse-*",
            "--json",
        ).stdout
    )
    assert added["schedule"] == "0 3 * * *" and added["duration_seconds"] == 2700 and added["next_window_at"]
    opened = json.loads(cli("maintenance", "open", "etl", "--duration", "20m", "--json").stdout)
    assert opened["active"] is True
    listed = json.loads(cli("maintenance", "list", "--json").stdout)["items"]
    assert {w["name"] or w["component"] for w in listed} == {"nightly", "etl"}
    assert "closed maintenance window" in cli("maintenance", "close", "etl", str(opened["id"])).stdout
    bad = runner.invoke(app, ["maintenance", "add", "x", "--schedule", "nope", "--duration", "1h"])
    assert bad.exit_code != 0 and "schedule" in bad.output


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_cli_channels_commands(live, tmp_path, monkeypatch):
    from tests.pipelines.providers import SMTP_PASSWORD, SMTP_USER, smtp_server

    monkeypatch.setenv("PIPELINE_CLI_CONFIG_DIR", str(tmp_path / "cli"))
    monkeypatch.setenv("PIPELINE_URL", live.url)
    monkeypatch.setenv("PIPELINE_TOKEN", live.token())
    live.settings.security.ssrf_allowlist = ["127.0.0.1/32"]
    runner, app = CliRunner(), build_app()
    with smtp_server() as box:
        result = runner.invoke(
            app,
            [
                "channels",
                "add",
                "mail",
                "--kind",
                "email",
                "--set",
                "host=127.0.0.1",
                "--set",
                f"port={box.port}",
                "--set",
                "security=none",
                "--set",
                f"username={SMTP_USER}",
                "--set",
                f"password={SMTP_PASSWORD}",
                "--set",
                "from_address=guard@example.org",
                "--set",
                'to=["ops@example.org"]',
                "--json",
            ],
        )
        assert result.exit_code == 0, result.output
        created = json.loads(result.stdout)
        assert created["config"]["password"] == "********" and created["config"]["port"] == box.port
        result = runner.invoke(app, ["channels", "test", str(created["id"])])
        assert result.exit_code == 0 and "delivered" in result.stdout, result.output
        assert [rcpts for _, rcpts, _ in box.messages] == [["ops@example.org"]]
    listed = runner.invoke(app, ["channels", "list", "--json"])
    assert [c["kind"] for c in json.loads(listed.stdout)["items"]] == ["email"]
    bad = runner.invoke(app, ["channels", "add", "x", "--kind", "pigeon", "--set", "a=b"])
    assert bad.exit_code == 2 and "discord" in bad.output  # the API names the kinds it knows
    assert runner.invoke(app, ["channels", "remove", str(created["id"]), "--yes"]).exit_code == 0
