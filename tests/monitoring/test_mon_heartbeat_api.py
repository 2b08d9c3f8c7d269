"""Heartbeats through the API: token auth, and late / missing / failed / too short / too long."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from app.db.models import Component, ComponentState
from app.db.types import utcnow
from tests.monitoring.conftest import add_component, mon_settings, monitored, status_of

HB = {"kind": "heartbeat", "period_s": 60, "grace_s": 10, "min_runtime_s": 5, "max_runtime_s": 100}


async def _token(guard, name):
    r = await guard.client.post(f"/api/v1/components/{name}/ping-token", headers=await guard.headers("admin"))
    assert r.status_code == 200, r.text
    return r.json()["token"]


async def _ping(guard, name, token, **body):
    return await guard.client.post(
        f"/api/v1/components/{name}/heartbeat", json=body or None, headers={"X-Ping-Token": token}
    )


async def test_heartbeat_cases_through_the_api(db_url, tmp_path):
    async with monitored(mon_settings(db_url, tmp_path, {"failure_threshold": 1})) as (guard, scheduler):
        ids = {}
        for name in ("ok", "late", "missing", "failed", "short", "long", "running-too-long"):
            ids[name] = (await add_component(guard, name, HB))["id"]
        tokens = {
            name: await _token(guard, name)
            for name in ("ok", "late", "failed", "short", "long", "running-too-long")
        }
        assert (
            await _ping(guard, "ok", tokens["ok"], status="success", duration_seconds=30)
        ).status_code == 200
        assert (await _ping(guard, "late", tokens["late"])).status_code == 200
        assert (
            await _ping(guard, "failed", tokens["failed"], status="fail", message="disk full")
        ).status_code == 200
        assert (
            await _ping(guard, "short", tokens["short"], status="success", duration_seconds=1)
        ).status_code == 200
        assert (await _ping(guard, "long", tokens["long"], status="start")).status_code == 200
        r = await _ping(guard, "long", tokens["long"], status="success", duration_seconds=500)
        assert r.status_code == 200 and r.json()["duration_seconds"] == 500
        assert (
            await _ping(guard, "running-too-long", tokens["running-too-long"], status="start")
        ).status_code == 200
        past = utcnow() - timedelta(seconds=600)
        async with guard.session() as session:
            await session.execute(
                update(ComponentState)
                .where(ComponentState.component_id == ids["late"])
                .values(last_ping_at=past)
            )
            await session.execute(
                update(ComponentState)
                .where(ComponentState.component_id == ids["running-too-long"])
                .values(
                    last_ping_at=utcnow() - timedelta(seconds=200),
                    last_start_at=utcnow() - timedelta(seconds=200),
                )
            )
            await session.execute(
                update(Component).where(Component.name == "missing").values(created_at=past)
            )
        await scheduler.run_once()
        expected = {
            "ok": "healthy",
            "late": "critical",
            "missing": "critical",
            "failed": "critical",
            "short": "critical",
            "long": "critical",
            "running-too-long": "critical",
        }
        got = {name: (await status_of(guard, name)) for name in expected}
        assert {n: s["status"] for n, s in got.items()} == expected, {
            n: s["last_detail"] for n, s in got.items()
        }
        assert "late" in got["late"]["last_detail"] and "shorter" in got["short"]["last_detail"]
        assert "longer" in got["long"]["last_detail"] and "failure" in got["failed"]["last_detail"]
        assert "has not finished" in got["running-too-long"]["last_detail"]


async def test_heartbeat_auth(db_url, tmp_path):
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, _scheduler):
        await add_component(guard, "job", HB)
        await add_component(guard, "web", {"kind": "tcp", "host": "127.0.0.1", "port": 9})
        token = await _token(guard, "job")
        assert (await _ping(guard, "job", "wrong-token")).status_code == 401
        assert (await guard.client.post("/api/v1/components/job/heartbeat")).status_code == 401
        r = await guard.client.post(
            f"/api/v1/components/job/heartbeat?token={token}", json={"status": "start"}
        )
        assert r.status_code == 200 and r.json()["status"] == "start"
        for role in ("ingest", "viewer"):
            r = await guard.client.post("/api/v1/components/job/heartbeat", headers=await guard.headers(role))
            assert r.status_code == 200, (role, r.text)
        assert (
            await guard.client.post("/api/v1/components/web/heartbeat", headers=await guard.headers("ingest"))
        ).status_code == 409
        r = await guard.client.post(
            "/api/v1/components/job/ping-token", headers=await guard.headers("viewer")
        )
        assert r.status_code == 403
        # A new token replaces the old one; only its hash is stored.
        new = await _token(guard, "job")
        assert (await _ping(guard, "job", token)).status_code == 401
        assert (await _ping(guard, "job", new)).status_code == 200
        async with guard.session() as session:
            stored = (
                await session.execute(Component.__table__.select().where(Component.name == "job"))
            ).one()
            assert new not in str(stored) and len(stored.ping_token_hash) == 64


def test_heartbeat_route_declares_a_permission():
    import pathlib

    from app.api.routes import iter_api_routes, route_permission
    from app.auth.permissions import Permission
    from app.main import create_app
    from tests.conftest import make_settings

    app = create_app(make_settings("sqlite+aiosqlite:////tmp/unused.db", pathlib.Path("/tmp")))
    routes = {r.path: route_permission(r) for r in iter_api_routes(app)}
    assert routes["/api/v1/components/{name}/heartbeat"] == frozenset(
        {Permission.WRITE_METRICS, Permission.MONITOR_HEALTH}
    )
    for path in (
        "/api/v1/status",
        "/api/v1/status/detailed",
        "/api/v1/components/{name}/history",
        "/api/v1/components/{name}/uptime",
    ):
        assert routes[path] == Permission.MONITOR_HEALTH
