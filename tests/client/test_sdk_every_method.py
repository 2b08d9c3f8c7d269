"""Every method of both SDK clients against a real guard on loopback (SQLite and Postgres).

The scenario is written once and run with the sync and the async client; a method added to the SDK
and not exercised here fails `test_the_scenario_covers_every_method`.
"""

from __future__ import annotations

import asyncio
import inspect
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from live_guard import serve_guard

from app.client import AsyncGuardClient, GuardAPIError, GuardClient
from app.client import calls as client_calls
from tests.conftest import make_settings

AM_TOKEN = "alertmanager-test-token"
# Methods that are not API calls of their own, exercised implicitly or by name below.
EXTRA_METHODS = {"record_metric", "record_batch", "flush", "heartbeat", "job", "maintenance", "request"}


@pytest.fixture
def am_live(db_url, tmp_path):
    settings = make_settings(
        db_url, tmp_path, security={"alertmanager_token": AM_TOKEN, "ssrf_allowlist": ["127.0.0.1/32"]}
    )
    with serve_guard(settings) as guard:
        yield guard


class Recorder:
    """Calls the client's methods by name (awaiting the async ones) and notes which were used."""

    def __init__(self, client):
        self.client = client
        self.used: set[str] = set()

    async def __call__(self, name: str, *args, **kwargs):
        self.used.add(name)
        result = getattr(self.client, name)(*args, **kwargs)
        return await result if inspect.isawaitable(result) else result


async def scenario(call: Recorder, url: str, hook_url: str) -> None:
    me = await call("me")
    assert me["role"] == "admin"
    created = await call(
        "create_component",
        {
            "name": "etl",
            "labels": {"region": "eu"},
            "critical": True,
            "check": {"kind": "heartbeat", "period": "1h"},
        },
    )
    assert created["name"] == "etl"
    assert (await call("get_component", "etl"))["check"]["kind"] == "heartbeat"
    assert (await call("update_component", "etl", {"description": "nightly"}))["description"] == "nightly"
    assert (await call("disable_component", "etl"))["enabled"] is False
    assert (await call("enable_component", "etl"))["enabled"] is True
    assert [c["name"] for c in (await call("list_components", region="eu"))["items"]] == ["etl"]

    # metrics: buffered, batched, read back every way the SDK offers
    await call("record_metric", "etl", "latency_ms", 95.0, {"stage": "load"})
    for value in (100.0, 105.0, 400.0):
        await call("record_metric", "etl", "latency_ms", value, {"stage": "load"})
    assert await call("flush") == 4
    assert await call("record_batch", [{"component": "etl", "metric_name": "rows", "value": 7}]) == 1
    points = await call("get_metrics", "etl", "latency_ms", labels={"stage": "load"}, limit=10)
    assert sorted(p["value"] for p in points["items"]) == [95.0, 100.0, 105.0, 400.0]
    summary = await call("get_metric_summary", "etl", "latency_ms", since="1h")
    assert summary["count"] == 4 and summary["max"] == 400.0
    assert (await call("get_metric_summary", "etl", "latency_ms", since=3600))["count"] == 4
    latest = await call("get_latest_metrics", "etl", ["rows"])
    assert [(p["metric_name"], p["value"]) for p in latest] == [("rows", 7.0)]
    assert await call("get_baselines", "etl", "latency_ms") == []

    # heartbeats and a job run
    assert (await call("heartbeat", "etl", "success", 1.5, "ok"))["status"] == "success"
    runner = await call("job", "etl")
    if hasattr(runner, "__aenter__"):
        async with runner:
            pass
    else:
        with runner:
            pass
    status = await call("get_system_status")
    assert "etl" in [c["name"] for c in status["components"]]

    # a maintenance window the pipeline opens around its own work, closed when the block ends
    window = await call("maintenance", "etl", "30m", comment="backfill")
    if hasattr(window, "__aenter__"):
        async with window:
            assert [s["component"] for s in (await call("list_silences"))["items"]] == ["etl"]
    else:
        with window:
            assert [s["component"] for s in (await call("list_silences"))["items"]] == ["etl"]
    assert (await call("list_silences"))["items"] == []

    # an alert from Alertmanager, then acknowledged, read, resolved; a silence added and expired
    labels = {"alertname": "HighLatency", "component": "etl", "severity": "critical"}
    await asyncio.to_thread(
        httpx.post,
        f"{url}/api/v1/integrations/alertmanager",
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
                    "labels": labels,
                    "annotations": {"summary": "latency"},
                    "startsAt": datetime.now(UTC).isoformat(),
                    "fingerprint": "abc123",
                }
            ],
        },
    )
    alerts = (await call("list_alerts", state="firing", component="etl"))["items"]
    assert len(alerts) == 1
    alert_id = alerts[0]["id"]
    until = datetime.now(UTC) + timedelta(hours=1)
    assert (await call("ack_alert", alert_id, until=until, comment="looking"))["status"] == "acknowledged"
    assert (await call("get_alert", alert_id))["id"] == alert_id
    resolved = await call("resolve_alert", alert_id, comment="restarted by hand")
    assert resolved["status"] == "resolved"
    silence = await call("create_silence", component="etl", duration="30m", comment="deploy")
    assert silence["component"] == "etl" and silence["active"] is True
    spec = {"labels": {"region": "eu"}, "ends_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}
    assert (await call("create_silence", spec))["labels"] == {"region": "eu"}
    assert len((await call("list_silences"))["items"]) == 2
    assert (await call("expire_silence", silence["id"]))["active"] is False
    assert len((await call("list_silences"))["items"]) == 1
    assert len((await call("list_silences", include_expired=True))["items"]) == 3  # with the closed window

    # channels
    channel = await call(
        "create_channel",
        {
            "name": "ops",
            "kind": "webhook",
            "severities": ["critical"],
            "config": {"url": hook_url, "secret": "s3cret-signing-key"},
        },
    )
    assert (await call("get_channel", channel["id"]))["config"].get("secret") != "s3cret-signing-key"
    assert (await call("test_channel", channel["id"]))["delivered"] is True
    assert (await call("update_channel", channel["id"], {"enabled": False}))["enabled"] is False
    assert [c["name"] for c in (await call("list_channels"))["items"]] == ["ops"]
    assert await call("delete_channel", channel["id"]) is None

    # healing: the request is read (strategy and reason), and refused for this policy-less component
    with pytest.raises(GuardAPIError) as refused:
        await call("heal", "etl", strategy="restart", reason="manual")
    assert refused.value.status == 409 and "no enabled strategy named 'restart'" in refused.value.message
    assert (await call("list_healing_attempts", component="etl"))["items"] == []

    # users and the audit log
    await call("create_user", "pipeline-bot", "pipeline-bot-password", "ingest")
    assert (await call("update_user", "pipeline-bot", role="viewer"))["role"] == "viewer"
    assert "pipeline-bot" in [u["username"] for u in (await call("list_users"))["items"]]
    entries = (await call("list_audit", actor=me["username"], since="1h"))["items"]
    assert entries and {e["username"] for e in entries} == {me["username"]}
    assert (await call("request", "GET", "/api/v1/components/etl"))["name"] == "etl"
    assert await call("delete_component", "etl") is None
    await call("logout")


def test_sync_client_every_method(am_live, receiver):
    with GuardClient(
        am_live.url, username=am_live.username, password=am_live.password, raise_errors=True, flush_interval=0
    ) as guard:
        recorder = Recorder(guard)
        asyncio.run(scenario(recorder, am_live.url, receiver.url))
    assert recorder.used >= {op.__name__ for op in client_calls.OPERATIONS} | EXTRA_METHODS


async def test_async_client_every_method(am_live, receiver):
    async with AsyncGuardClient(
        am_live.url, username=am_live.username, password=am_live.password, raise_errors=True, flush_interval=0
    ) as guard:
        recorder = Recorder(guard)
        await scenario(recorder, am_live.url, receiver.url)
    assert recorder.used >= {op.__name__ for op in client_calls.OPERATIONS} | EXTRA_METHODS


def test_the_scenario_covers_every_method():
    public = {
        name
        for cls in (GuardClient, AsyncGuardClient)
        for name, _ in inspect.getmembers(cls, callable)
        if not name.startswith("_")
    }
    covered = (
        {op.__name__ for op in client_calls.OPERATIONS}
        | EXTRA_METHODS
        | {"close", "is_closing", "call_deadline"}
    )
    assert public <= covered, public - covered
