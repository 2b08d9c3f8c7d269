"""HTTP-check credentials are write-only for every role and encrypted at rest.

A real loopback server only answers 200 when the probe carries the real credentials, so the test
also proves the scheduler still gets them after they were masked and sealed.
"""

from __future__ import annotations

import json
import logging

import pytest
from aiohttp import web
from sqlalchemy import text

from app.security.crypto import MASK
from tests.monitoring.conftest import mon_settings, monitored
from tests.support.loopback import serve_app

SECRETS = ("s3cr3t-AUTH", "s3cr3t-CUSTOM", "s3cr3t-PASS", "s3cr3t-QUERY", "s3cr3t-COOKIE")


@pytest.fixture
async def strict_target():
    """200 only for the exact credentials; records what it saw."""
    seen: list[dict] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(
            {
                "auth": request.headers.get("Authorization"),
                "custom": request.headers.get("X-Custom-Token"),
                "query": dict(request.query),
            }
        )
        ok = (
            request.headers.get("X-Custom-Token") == "s3cr3t-CUSTOM"
            and request.headers.get("Cookie") == "sid=s3cr3t-COOKIE"
            and request.query.get("api_key") == "s3cr3t-QUERY"
            and request.headers.get("Authorization", "").startswith("Basic ")
        )
        return web.Response(status=200 if ok else 401, text="ok" if ok else "no")

    app = web.Application()
    app.router.add_get("/ok", handler)
    async with serve_app(app) as port:
        yield port, seen


def _check(port: int, **overrides) -> dict:
    check = {
        "kind": "http",
        # userinfo: aiohttp turns it into the Basic Authorization header the target wants
        "url": f"http://probe:s3cr3t-PASS@127.0.0.1:{port}/ok?api_key=s3cr3t-QUERY&page=2",
        "headers": {"X-Custom-Token": "s3cr3t-CUSTOM", "Cookie": "sid=s3cr3t-COOKIE", "X-Plain": "visible"},
        "secret_headers": ["X-Custom-Token"],
    }
    check.update(overrides)
    return check


def _assert_no_secret(text_: str) -> None:
    for secret in SECRETS:
        assert secret not in text_, f"{secret} leaked: {text_[:500]}"


async def test_check_secrets_masked_for_every_role_encrypted_at_rest_and_still_used(
    db_url, tmp_path, strict_target, caplog
):
    port, seen = strict_target
    caplog.set_level(logging.DEBUG, logger="pipeline_guard")
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        admin = await guard.headers("admin")
        created = await guard.client.post(
            "/api/v1/components", headers=admin, json={"name": "api", "check": _check(port)}
        )
        assert created.status_code == 201, created.text
        _assert_no_secret(created.text)

        for role in ("viewer", "operator", "admin"):
            headers = await guard.headers(role)
            one = await guard.client.get("/api/v1/components/api", headers=headers)
            listed = await guard.client.get("/api/v1/components", headers=headers)
            assert one.status_code == listed.status_code == 200
            _assert_no_secret(one.text)
            _assert_no_secret(listed.text)
            check = one.json()["check"]
            assert check["headers"] == {"X-Custom-Token": MASK, "Cookie": MASK, "X-Plain": "visible"}
            assert check["url"] == f"http://probe:{MASK}@127.0.0.1:{port}/ok?api_key={MASK}&page=2"
            assert "secrets" not in check

        async with guard.session() as session:
            row = (
                await session.execute(text("SELECT \"check\" FROM components WHERE name = 'api'"))
            ).scalar_one()
        raw = row if isinstance(row, str) else json.dumps(row)
        _assert_no_secret(raw)
        assert "secrets" in json.loads(raw)

        # The probe still carries the real credentials.
        await scheduler.run_once()
        assert (
            seen and seen[-1]["custom"] == "s3cr3t-CUSTOM" and seen[-1]["query"]["api_key"] == "s3cr3t-QUERY"
        )
        state = (await guard.client.get("/api/v1/components/api", headers=admin)).json()["state"]
        assert state["last_outcome"] == "up", state

        # An admin PATCHes back what it read (masks included): the stored secrets stay.
        shown = (await guard.client.get("/api/v1/components/api", headers=admin)).json()["check"]
        shown = {k: v for k, v in shown.items() if v is not None}
        patched = await guard.client.patch(
            "/api/v1/components/api", headers=admin, json={"check": {**shown, "interval": 7}}
        )
        assert patched.status_code == 200, patched.text
        _assert_no_secret(patched.text)
        seen.clear()
        await scheduler.run_once()
        assert seen[-1]["custom"] == "s3cr3t-CUSTOM" and seen[-1]["query"]["api_key"] == "s3cr3t-QUERY"

        # The mask never follows the check to another host: the credentials must be sent again.
        moved = {**shown, "url": shown["url"].replace("127.0.0.1", "localhost")}
        refused = await guard.client.patch("/api/v1/components/api", headers=admin, json={"check": moved})
        assert refused.status_code == 422, refused.text
        assert "check.headers." in refused.text or "check.url" in refused.text

        page = await guard.client.get("/status")
        assert page.status_code == 200
        _assert_no_secret(page.text)
    _assert_no_secret("\n".join(r.getMessage() for r in caplog.records))


async def test_new_secret_value_replaces_the_stored_one(db_url, tmp_path, strict_target):
    port, seen = strict_target
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        admin = await guard.headers("admin")
        wrong = _check(port, headers={"X-Custom-Token": "wrong", "Cookie": "sid=s3cr3t-COOKIE"})
        assert (
            await guard.client.post("/api/v1/components", headers=admin, json={"name": "api", "check": wrong})
        ).status_code == 201
        await scheduler.run_once()
        assert seen[-1]["custom"] == "wrong"
        shown = (await guard.client.get("/api/v1/components/api", headers=admin)).json()["check"]
        shown = {k: v for k, v in shown.items() if v is not None}
        fixed = {**shown, "headers": {**shown["headers"], "X-Custom-Token": "s3cr3t-CUSTOM"}}
        r = await guard.client.patch("/api/v1/components/api", headers=admin, json={"check": fixed})
        assert r.status_code == 200, r.text
        await scheduler.run_once()
        assert seen[-1]["custom"] == "s3cr3t-CUSTOM"


async def test_config_declared_check_is_sealed_and_resync_is_not_a_change(db_url, tmp_path, strict_target):
    port, seen = strict_target
    declared = [{"name": "declared-api", "check": _check(port)}]
    settings = mon_settings(db_url, tmp_path, components=declared)
    async with monitored(settings) as (guard, scheduler):
        async with guard.session() as session:
            row = (
                await session.execute(
                    text("SELECT \"check\", version FROM components WHERE name = 'declared-api'")
                )
            ).one()
        raw = row[0] if isinstance(row[0], str) else json.dumps(row[0])
        _assert_no_secret(raw)
        version = row[1]
        shown = await guard.client.get(
            "/api/v1/components/declared-api", headers=await guard.headers("admin")
        )
        _assert_no_secret(shown.text)
        await scheduler.run_once()
        assert seen[-1]["custom"] == "s3cr3t-CUSTOM"
    # A restart syncs the same declaration again: a sealed row that holds the same check is no change.
    async with monitored(settings) as (guard, _scheduler):
        async with guard.session() as session:
            again = (
                await session.execute(text("SELECT version FROM components WHERE name = 'declared-api'"))
            ).scalar_one()
        assert again == version
