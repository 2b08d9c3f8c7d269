"""A ping URL's run id (``?rid=<uuid>``, healthchecks.io's): every ping URL and method takes it, nothing
else; a finish is timed from its own run's ``/start``; a late finish of a run that started before the
recovery action in flight is stored but judges nothing (docs/LIFECYCLE.md rule 12)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from app.db.types import utcnow
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


async def test_every_ping_url_and_method_takes_a_run_id(db_url, tmp_path):
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, _scheduler):
        await add_component(guard, "nightly", HB)
        token = await ping_token(guard, "nightly")
        c = guard.client
        rid = str(uuid.uuid4())
        r = await c.get(f"/ping/{token}/start?rid={rid.upper()}")  # stored as the canonical lower case
        assert r.status_code == 200 and r.json()["rid"] == rid and r.json()["judged"] is True, r.text
        r = await c.post(f"/ping/{token}?rid={rid}", content=b"loaded 12 rows\n")
        assert r.status_code == 200 and r.json()["duration_seconds"] >= 0, r.text
        assert (await c.head(f"/ping/{token}/fail?rid={rid}")).status_code == 200
        assert (await c.get(f"/ping/{token}/0?rid={rid}")).json()["status"] == "success"
        assert (await c.post(f"/ping/{token}/3?rid={rid}")).json()["status"] == "fail"
        assert (await c.head(f"/ping/{token}/start?rid={rid}")).status_code == 200
        pings = await stored_pings(guard)
        assert [(s, r) for s, r, _ in pings] == [
            ("start", rid),
            ("success", rid),
            ("fail", rid),
            ("success", rid),
            ("fail", rid),
            ("start", rid),
        ]


@pytest.mark.parametrize(
    "query",
    [
        "rid=not-a-uuid",
        "rid=",
        "rid=0f6ea1b4b8b34a4c9d0d6b5b7b0e4f2a",  # no hyphens
        "rid={0f6ea1b4-b8b3-4a4c-9d0d-6b5b7b0e4f2a}",
        "rid=urn:uuid:0f6ea1b4-b8b3-4a4c-9d0d-6b5b7b0e4f2a",
        "rid=0f6ea1b4-b8b3-4a4c-9d0d-6b5b7b0e4f2a&rid=1f6ea1b4-b8b3-4a4c-9d0d-6b5b7b0e4f2a",
    ],
)
async def test_a_run_id_that_is_not_one_uuid_is_refused(db_url, tmp_path, query):
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, _scheduler):
        await add_component(guard, "nightly", HB)
        token = await ping_token(guard, "nightly")
        c = guard.client
        for path in ("", "/start", "/fail", "/0", "/2"):
            r = await c.get(f"/ping/{token}{path}?{query}")
            assert r.status_code == 422, (path, r.text)
            error = r.json()["error"]
            assert set(error) == {"type", "message", "details", "timestamp"}
            assert error["details"]["fields"] == [{"field": "query.rid", "message": "must be one UUID"}]
            assert "UUID" in error["message"]
            assert (await c.post(f"/ping/{token}{path}?{query}", content=b"log")).status_code == 422
            assert (await c.head(f"/ping/{token}{path}?{query}")).status_code == 422
        assert await stored_pings(guard) == []


async def test_other_query_parameters_stay_refused_beside_a_run_id(db_url, tmp_path):
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, _scheduler):
        await add_component(guard, "nightly", HB)
        token = await ping_token(guard, "nightly")
        rid = str(uuid.uuid4())
        for query in (
            f"rid={rid}&status=fail",
            f"status=fail&rid={rid}",
            "status=fail",
            f"rid={rid}&x=1&a=2",
        ):
            r = await guard.client.get(f"/ping/{token}?{query}")
            assert r.status_code == 422, query
            fields = [f["field"] for f in r.json()["error"]["details"]["fields"]]
            assert "query.rid" not in fields and fields, (query, fields)
        assert await stored_pings(guard) == []


async def test_overlapping_runs_are_each_timed_from_their_own_start(db_url, tmp_path):
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, _scheduler):
        component = await add_component(guard, "nightly", HB)
        token = await ping_token(guard, "nightly")
        c = guard.client
        first, second, unknown = (str(uuid.uuid4()) for _ in range(3))
        assert (await c.get(f"/ping/{token}/start?rid={first}")).status_code == 200
        await backdate_start(guard, component["id"], first, 600)
        # The next run fires while the first still runs (a cron that does not wait).
        assert (await c.get(f"/ping/{token}/start?rid={second}")).status_code == 200
        await backdate_start(guard, component["id"], second, 100)
        ended = (await c.get(f"/ping/{token}?rid={first}")).json()
        assert 600 <= ended["duration_seconds"] < 700, ended  # not the 100 s since the latest /start
        assert (await component_state(guard, component["id"])).last_duration_s == ended["duration_seconds"]
        ended = (await c.get(f"/ping/{token}/fail?rid={second}")).json()
        assert 100 <= ended["duration_seconds"] < 200, ended
        # A run that never pinged /start has no duration (as healthchecks.io).
        assert (await c.get(f"/ping/{token}?rid={unknown}")).json()["duration_seconds"] is None
        assert (await component_state(guard, component["id"])).last_duration_s is None
        # Pings without a run id are timed as ever: from the last /start.
        assert (await c.get(f"/ping/{token}/start")).status_code == 200
        await backdate_start(guard, component["id"], None, 50)
        ended = (await c.get(f"/ping/{token}")).json()
        assert 50 <= ended["duration_seconds"] < 150, ended
        durations = [d for s, _, d in await stored_pings(guard) if s != "start"]
        assert durations[0] >= 600 and 100 <= durations[1] < 200 and durations[2] is None


async def test_a_late_finish_of_the_replaced_run_judges_nothing(db_url, tmp_path):
    """A stuck run (``rid`` OLD) started before the recovery action in flight; its late ``/fail``
    arrives during the verification: stored, answered 200 "not judged", and the check still waits
    for the rerun; the rerun (its own ``rid``) is then judged on itself. The same ``/fail`` without a
    run id is read as the rerun's, as before: critical at once."""
    async with monitored(mon_settings(db_url, tmp_path, {"failure_threshold": 3})) as (guard, scheduler):
        component = await add_component(guard, "nightly", {**HB, "max_runtime": "20m"}, critical=True)
        token = await ping_token(guard, "nightly")
        c = guard.client
        old, new = str(uuid.uuid4()), str(uuid.uuid4())
        assert (await c.get(f"/ping/{token}/start?rid={old}")).status_code == 200
        await backdate_start(guard, component["id"], old, 600)
        await scheduler.run_once()
        assert (await status_of(guard, "nightly"))["status"] == "healthy"
        await action_in_flight(guard, component, 10)
        before = await component_state(guard, component["id"])

        r = await c.post(f"/ping/{token}/fail?rid={old}", content=b"killed")
        body = r.json()
        assert r.status_code == 200 and body["judged"] is False and body["rid"] == old, r.text
        assert "not judged" in body["detail"] and body["duration_seconds"] >= 600
        late = await c.get(f"/ping/{token}/0?rid={old}")  # its success would not verify the rerun either
        assert late.json()["judged"] is False
        await assert_not_judged(guard, scheduler, component, before)
        assert [(s, r) for s, r, _ in await stored_pings(guard)] == [
            ("start", old),
            ("fail", old),
            ("success", old),
        ]

        # The rerun, with its own run id, is judged on itself.
        assert (await c.get(f"/ping/{token}/start?rid={new}")).json()["judged"] is True
        ended = (await c.get(f"/ping/{token}?rid={new}")).json()
        assert ended["judged"] is True and 0 <= ended["duration_seconds"] < 60, ended
        await scheduler.run_once()
        assert (await status_of(guard, "nightly"))["status"] == "healthy"

        # Without a run id the guard cannot tell the runs apart: a /fail judges (as before).
        assert (await c.get(f"/ping/{token}/fail")).json()["judged"] is True
        await scheduler.run_once()
        assert (await status_of(guard, "nightly"))["status"] == "critical"


def test_a_run_is_replaced_only_when_it_started_before_the_action_in_flight():
    from app.healing.reruns import replaced_run

    now = utcnow()
    earlier, later = now - timedelta(seconds=5), now + timedelta(seconds=5)
    assert replaced_run(earlier, now)
    assert not replaced_run(later, now)
    assert not replaced_run(now, now)  # the same instant: not before the action
    assert not replaced_run(None, now)  # a run that never pinged /start: judged as any finish
    assert not replaced_run(earlier, None)  # no action in flight: every run judges


def _readme_rid_example() -> str:
    """The README's shell block that names its run (``?rid=``), as written."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL)
    (block,) = [b for b in blocks if "?rid=" in b]
    return block


@pytest.mark.parametrize(("exit_code", "status"), [(0, "success"), (3, "fail")])
def test_the_readme_run_id_example_runs_with_curl(settings, exit_code, status):
    """The README's example, run by bash with the real curl against a guard on loopback: one run id
    for the run's /start and its exit code, the run's duration measured from that /start."""
    import httpx
    from live_guard import serve_guard

    with serve_guard(settings) as live:
        admin = {"Authorization": f"Bearer {live.token()}"}
        check = {"kind": "heartbeat", "period_s": 3600}
        created = httpx.post(
            f"{live.url}/api/v1/components", json={"name": "nightly-etl", "check": check}, headers=admin
        )
        assert created.status_code == 201, created.text
        token = httpx.post(f"{live.url}/api/v1/components/nightly-etl/ping-token", headers=admin).json()[
            "token"
        ]
        job = f"nightly-etl() {{ sleep 1; return {exit_code}; }}\n"  # the job the example runs
        done = subprocess.run(
            ["bash", "-c", job + _readme_rid_example()],
            env={**os.environ, "PING_URL": f"{live.url}/ping/{token}"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    decoder, answers, at = json.JSONDecoder(), [], 0
    while at < len(done.stdout):
        answer, at = decoder.raw_decode(done.stdout, at)
        answers.append(answer)
    started, ended = answers
    assert started["status"] == "start" and ended["status"] == status, answers
    assert started["rid"] == ended["rid"] and uuid.UUID(started["rid"]), answers
    assert ended["judged"] is True and 1 <= ended["duration_seconds"] < 30, answers
