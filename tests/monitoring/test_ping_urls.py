"""Batch-job ping URLs (healthchecks.io style): the token alone, GET/HEAD/POST, start/fail/exit code,
the body kept as the run's log, unknown query parameters refused, a failure believed at once."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.db.models import HeartbeatPing
from tests.monitoring.conftest import add_component, mon_settings, monitored, status_of

HB = {"kind": "heartbeat", "period": "1h", "grace": "5m"}
SCHEDULED_HB = {"kind": "heartbeat", "schedule": "0 2 * * *", "grace": "5m"}


async def _token(guard, name):
    r = await guard.client.post(f"/api/v1/components/{name}/ping-token", headers=await guard.headers("admin"))
    assert r.status_code == 200, r.text
    return r.json()["token"]


async def _pings(guard, name):  # one component per test
    async with guard.session() as session:
        rows = (await session.execute(select(HeartbeatPing).order_by(HeartbeatPing.id))).scalars().all()
        return [(p.status, p.source, p.message) for p in rows]


async def test_every_ping_url_with_every_method(db_url, tmp_path):
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, _scheduler):
        await add_component(guard, "nightly", HB)
        token = await _token(guard, "nightly")
        c = guard.client
        assert (await c.get(f"/ping/{token}/start")).json()["status"] == "start"
        r = await c.post(f"/ping/{token}", content=b"loaded 1234 rows\n")
        assert r.status_code == 200 and r.json()["status"] == "success" and r.json()["duration_seconds"] >= 0
        assert (await c.head(f"/ping/{token}")).status_code == 200
        assert (await c.get(f"/ping/{token}/0")).json()["status"] == "success"
        r = await c.post(f"/ping/{token}/3", content=b"Traceback: disk full")
        assert r.json()["status"] == "fail"
        assert (await c.post(f"/ping/{token}/fail")).json()["status"] == "fail"
        pings = await _pings(guard, "nightly")
        assert [p[0] for p in pings] == ["start", "success", "success", "success", "fail", "fail"]
        assert {p[1] for p in pings} == {"ping-url"}
        assert pings[1][2] == "loaded 1234 rows\n" and pings[4][2] == "exit code 3\nTraceback: disk full"


async def test_bad_pings_are_refused_and_change_nothing(db_url, tmp_path):
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, _scheduler):
        await add_component(guard, "nightly", HB)
        token = await _token(guard, "nightly")
        c = guard.client
        r = await c.get(f"/ping/{token}?status=fail")
        assert r.status_code == 422 and r.json()["error"]["details"]["fields"][0]["field"] == "query.status"
        assert (await c.get("/ping/not-a-token")).status_code == 404
        assert (await c.get(f"/ping/{token}/256")).status_code == 422
        assert (await c.get(f"/ping/{token}/oops")).status_code == 422
        assert (
            await c.post(f"/ping/{token}", headers={"Content-Length": "2000000"}, content=b"x" * 2_000_000)
        ).status_code == 413
        # the JSON heartbeat route refuses unknown query parameters as well
        r = await c.post(f"/api/v1/components/nightly/heartbeat?token={token}&status=fail")
        assert r.status_code == 422
        assert await _pings(guard, "nightly") == []
        for error in (await c.get(f"/ping/{token}?x=1")).json(), (await c.get("/ping/nope")).json():
            assert set(error["error"]) == {"type", "message", "details", "timestamp"}


async def test_a_long_log_is_kept_bounded(db_url, tmp_path):
    from app.monitoring.ping_router import PING_LOG_MAX_BYTES

    async with monitored(mon_settings(db_url, tmp_path)) as (guard, _scheduler):
        await add_component(guard, "nightly", HB)
        token = await _token(guard, "nightly")
        r = await guard.client.post(f"/ping/{token}/fail", content=b"y" * (PING_LOG_MAX_BYTES * 5))
        assert r.status_code == 200
        ((status, _source, message),) = await _pings(guard, "nightly")
        assert status == "fail" and message.startswith("y" * 100) and message.endswith("[log truncated]")
        assert len(message) <= PING_LOG_MAX_BYTES + 100


@pytest.mark.parametrize("check", [HB, SCHEDULED_HB], ids=["period", "schedule"])
async def test_a_failed_run_is_unhealthy_at_once_and_fires_its_alert(db_url, tmp_path, check):
    # failure_threshold 3: a probe would need three failed checks; a job that says it failed needs none,
    # whether it runs every period or on a cron schedule.
    async with monitored(mon_settings(db_url, tmp_path, {"failure_threshold": 3})) as (guard, scheduler):
        await add_component(guard, "nightly", check, critical=True)
        token = await _token(guard, "nightly")
        assert (await guard.client.get(f"/ping/{token}")).status_code == 200
        await scheduler.run_once()
        assert (await status_of(guard, "nightly"))["status"] == "healthy"
        assert (await guard.client.post(f"/ping/{token}/1", content=b"boom")).status_code == 200
        await scheduler.run_once()
        state = await status_of(guard, "nightly")
        assert state["status"] == "critical", state
        alerts = (
            await guard.client.get("/api/v1/alerts?component=nightly", headers=await guard.headers("viewer"))
        ).json()["items"]
        assert [(a["status"], a["severity"]) for a in alerts] == [("firing", "critical")]
        # the next success is believed as usual (success_threshold)
        assert (await guard.client.get(f"/ping/{token}/0")).status_code == 200
        await scheduler.run_once()
        assert (await status_of(guard, "nightly"))["status"] == "healthy"


@pytest.mark.parametrize("check", [HB, SCHEDULED_HB], ids=["period", "schedule"])
async def test_a_run_outside_its_runtime_window_is_unhealthy_at_once(db_url, tmp_path, check):
    # failure_threshold 3 and no recovery action: a run shorter than its min_runtime is its own
    # verdict, like a /fail, and needs no streak of failed checks.
    async with monitored(mon_settings(db_url, tmp_path, {"failure_threshold": 3})) as (guard, scheduler):
        await add_component(guard, "nightly", {**check, "min_runtime": "1m"}, critical=True)
        token = await _token(guard, "nightly")
        assert (await guard.client.get(f"/ping/{token}")).status_code == 200
        await scheduler.run_once()
        assert (await status_of(guard, "nightly"))["status"] == "healthy"
        assert (await guard.client.get(f"/ping/{token}/start")).status_code == 200
        assert (await guard.client.get(f"/ping/{token}")).status_code == 200
        await scheduler.run_once()
        state = await status_of(guard, "nightly")
        assert state["status"] == "critical" and "shorter than min_runtime" in state["last_detail"], state
