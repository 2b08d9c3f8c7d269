"""The client SDK against a real guard served by uvicorn on loopback (SQLite and Postgres)."""

from __future__ import annotations

import pytest

from app.client import AsyncGuardClient, GuardAPIError, GuardClient


def test_sync_client_against_a_running_guard(live):
    with GuardClient(
        live.url, username=live.username, password=live.password, raise_errors=True, flush_interval=0
    ) as guard:
        assert guard.me()["role"] == "admin"
        created = guard.create_component(
            {
                "name": "etl",
                "labels": {"region": "eu", "team": "data"},
                "critical": True,
                "check": {"kind": "http", "url": "http://127.0.0.1:9/health"},
            }
        )
        assert created["name"] == "etl" and created["region"] == "eu"
        assert guard.disable_component("etl")["enabled"] is False
        assert guard.enable_component("etl")["enabled"] is True
        page = guard.list_components(labels={"team": "data"})
        assert [c["name"] for c in page["items"]] == ["etl"]
        with pytest.raises(GuardAPIError) as caught:
            guard.create_component({"name": "etl"})
        assert caught.value.status == 409 and caught.value.type == "conflict"
        guard.create_user("pipeline-bot", "pipeline-bot-password", "ingest")
        assert "pipeline-bot" in [u["username"] for u in guard.list_users()["items"]]
        assert guard.delete_component("etl") is None
        with pytest.raises(GuardAPIError) as caught:
            guard.get_component("etl")
        assert caught.value.status == 404 and "etl" in caught.value.message


def test_sync_client_bad_token_is_an_envelope_error(live):
    with (
        GuardClient(live.url, "not-a-token", raise_errors=True, flush_interval=0) as guard,
        pytest.raises(GuardAPIError) as caught,
    ):
        guard.list_components()
    assert caught.value.status == 401 and caught.value.type == "unauthorized"
    with GuardClient(live.url, "not-a-token", flush_interval=0) as guard:
        assert guard.list_components() is None  # logged, not raised


def test_client_relogs_in_when_its_token_is_revoked(live):
    with GuardClient(
        live.url, username=live.username, password=live.password, raise_errors=True, flush_interval=0
    ) as guard:
        first = guard.me() and guard.token
        guard.logout()
        assert guard.me()["username"] == live.username
        assert guard.token != first


async def test_async_client_against_a_running_guard(live):
    token = live.token()
    async with AsyncGuardClient(live.url, token, raise_errors=True, flush_interval=0) as guard:
        await guard.create_component({"name": "train", "check": {"kind": "heartbeat", "period": "1h"}})
        component = await guard.get_component("train")
        assert component["check"]["kind"] == "heartbeat"
        page = await guard.list_components()
        assert page["total"] == 1
