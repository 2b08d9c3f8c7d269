"""The JSON heartbeat API's run id (``"rid"`` in the body, as a ping URL's ``?rid=``): validated and
normalised alike, a finish timed from its own run's ``start``, and a late finish of a run that started
before the recovery action in flight stored but judging nothing (docs/LIFECYCLE.md rule 12)."""

from __future__ import annotations

import uuid

import pytest

from tests.monitoring.conftest import add_component, mon_settings, monitored, status_of
from tests.monitoring.runs import (
    action_in_flight,
    assert_not_judged,
    backdate_start,
    component_state,
    ping_token,
    stored_pings,
)

HB = {"kind": "heartbeat", "period": "1h", "grace": "5m"}


async def _beat(guard, token, **body):
    return await guard.client.post(
        "/api/v1/components/nightly/heartbeat", json=body, headers={"X-Ping-Token": token}
    )


async def test_the_body_names_its_run(db_url, tmp_path):
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, _scheduler):
        await add_component(guard, "nightly", HB)
        token = await ping_token(guard, "nightly")
        rid = str(uuid.uuid4())
        r = await _beat(guard, token, status="start", rid=rid.upper())  # stored as the canonical lower case
        assert r.status_code == 200 and r.json()["rid"] == rid and r.json()["judged"] is True, r.text
        assert r.json()["detail"] is None
        r = await _beat(guard, token, status="fail", rid=rid, message="disk full", duration_seconds=12.5)
        assert r.status_code == 200 and r.json()["rid"] == rid and r.json()["duration_seconds"] == 12.5, (
            r.text
        )
        # A JWT caller names its run the same way; a body without one is answered without one.
        admin = await guard.headers("admin")
        r = await guard.client.post("/api/v1/components/nightly/heartbeat", json={"rid": rid}, headers=admin)
        assert r.status_code == 200 and r.json()["rid"] == rid, r.text
        r = await _beat(guard, token, status="success")
        assert r.status_code == 200 and r.json()["rid"] is None, r.text
        assert [(s, r) for s, r, _ in await stored_pings(guard)] == [
            ("start", rid),
            ("fail", rid),
            ("success", rid),
            ("success", None),
        ]


@pytest.mark.parametrize(
    "rid",
    [
        "not-a-uuid",
        "",
        "0f6ea1b4b8b34a4c9d0d6b5b7b0e4f2a",  # no hyphens
        "{0f6ea1b4-b8b3-4a4c-9d0d-6b5b7b0e4f2a}",
        "urn:uuid:0f6ea1b4-b8b3-4a4c-9d0d-6b5b7b0e4f2a",
        " 0f6ea1b4-b8b3-4a4c-9d0d-6b5b7b0e4f2a",
        12345,
        ["0f6ea1b4-b8b3-4a4c-9d0d-6b5b7b0e4f2a"],
    ],
)
async def test_a_run_id_that_is_not_one_uuid_is_refused(db_url, tmp_path, rid):
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, _scheduler):
        await add_component(guard, "nightly", HB)
        token = await ping_token(guard, "nightly")
        for status in ("start", "success", "fail"):
            r = await _beat(guard, token, status=status, rid=rid)
            assert r.status_code == 422, (status, r.text)
            error = r.json()["error"]
            assert error["type"] == "validation_error"
            assert [f["field"] for f in error["details"]["fields"]] == ["body.rid"], error
        assert await stored_pings(guard) == []


async def test_a_finish_without_a_duration_is_timed_from_its_own_runs_start(db_url, tmp_path):
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, _scheduler):
        component = await add_component(guard, "nightly", HB)
        token = await ping_token(guard, "nightly")
        first, second, unknown = (str(uuid.uuid4()) for _ in range(3))
        assert (await _beat(guard, token, status="start", rid=first)).status_code == 200
        await backdate_start(guard, component["id"], first, 600)
        assert (await _beat(guard, token, status="start", rid=second)).status_code == 200
        await backdate_start(guard, component["id"], second, 100)
        ended = (await _beat(guard, token, rid=first)).json()
        assert 600 <= ended["duration_seconds"] < 700, ended  # not the 100 s since the latest start
        assert (await component_state(guard, component["id"])).last_duration_s == ended["duration_seconds"]
        ended = (await _beat(guard, token, status="fail", rid=second)).json()
        assert 100 <= ended["duration_seconds"] < 200, ended
        assert (await _beat(guard, token, rid=unknown)).json()["duration_seconds"] is None
        # A duration the job measured itself is kept as sent.
        assert (await _beat(guard, token, rid=first, duration_seconds=3)).json()["duration_seconds"] == 3


async def test_a_late_fail_of_the_replaced_run_judges_nothing(db_url, tmp_path):
    """As the SDK's ``job()`` reports a stuck run: its ``start``, then, after the recovery action
    started, its ``fail`` with the duration it measured and the exception. Stored, answered "not
    judged", the check waits for the rerun; the same ``fail`` naming no run is read as the rerun's."""
    async with monitored(mon_settings(db_url, tmp_path, {"failure_threshold": 3})) as (guard, scheduler):
        component = await add_component(guard, "nightly", {**HB, "max_runtime": "20m"}, critical=True)
        token = await ping_token(guard, "nightly")
        old, new = str(uuid.uuid4()), str(uuid.uuid4())
        assert (await _beat(guard, token, status="start", rid=old)).status_code == 200
        await backdate_start(guard, component["id"], old, 600)
        await scheduler.run_once()
        assert (await status_of(guard, "nightly"))["status"] == "healthy"
        await action_in_flight(guard, component, 10)
        before = await component_state(guard, component["id"])

        failed = {"status": "fail", "duration_seconds": 600.5, "message": "TimeoutError: stuck"}
        r = await _beat(guard, token, rid=old, **failed)
        body = r.json()
        assert r.status_code == 200 and body["judged"] is False and body["rid"] == old, r.text
        assert "not judged" in body["detail"] and body["duration_seconds"] == 600.5
        await assert_not_judged(guard, scheduler, component, before)

        # The rerun, with its own run id, is judged on itself.
        assert (await _beat(guard, token, status="start", rid=new)).json()["judged"] is True
        ended = (await _beat(guard, token, rid=new, duration_seconds=2)).json()
        assert ended["judged"] is True and ended["detail"] is None, ended
        await scheduler.run_once()
        assert (await status_of(guard, "nightly"))["status"] == "healthy"

        # Naming no run, the guard cannot tell the runs apart: the fail judges (as before).
        assert (await _beat(guard, token, **failed)).json()["judged"] is True
        await scheduler.run_once()
        assert (await status_of(guard, "nightly"))["status"] == "critical"
        assert [(s, r) for s, r, _ in await stored_pings(guard)] == [
            ("start", old),
            ("fail", old),
            ("start", new),
            ("success", new),
            ("fail", None),
        ]


async def test_a_run_id_goes_in_the_body_not_the_query(db_url, tmp_path):
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, _scheduler):
        await add_component(guard, "nightly", HB)
        token = await ping_token(guard, "nightly")
        r = await guard.client.post(
            f"/api/v1/components/nightly/heartbeat?rid={uuid.uuid4()}",
            json={"status": "fail"},
            headers={"X-Ping-Token": token},
        )
        assert r.status_code == 422 and r.json()["error"]["details"]["fields"][0]["field"] == "query.rid"
        assert await stored_pings(guard) == []
