"""Heartbeats on a cron schedule (in an IANA zone) with a grace, and runs that never finish."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from app.checks.base import CheckConfigError, Outcome
from app.checks.heartbeat import evaluate_heartbeat, validate_heartbeat_params
from app.config.loading import load_settings
from app.db.models import Component, ComponentState
from app.db.types import utcnow
from tests.monitoring.conftest import add_component, mon_settings, monitored, status_of

NIGHTLY = {"schedule": "0 2 * * *", "tz": "Europe/Berlin", "grace": "30m"}
CREATED = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


def hb(now, params=NIGHTLY, **state):
    fields = {
        "last_ping_at": None,
        "last_ping_status": None,
        "last_start_at": None,
        "last_duration_s": None,
        "created_at": CREATED,
        **state,
    }
    return evaluate_heartbeat(validate_heartbeat_params(params), now=now, **fields)


def test_scheduled_run_missed_after_grace_in_its_time_zone():
    # 02:00 in Berlin is 01:00 UTC in winter; the ping of the 11th came, the 12th's did not
    pinged = datetime(2026, 1, 11, 1, 0, 40, tzinfo=UTC)
    assert hb(datetime(2026, 1, 12, 0, 59, tzinfo=UTC), last_ping_at=pinged).outcome == Outcome.UP
    within = hb(datetime(2026, 1, 12, 1, 20, tzinfo=UTC), last_ping_at=pinged)
    assert within.outcome == Outcome.UP and "within the grace" in within.detail
    late = hb(datetime(2026, 1, 12, 1, 31, tzinfo=UTC), last_ping_at=pinged)
    assert late.outcome == Outcome.DOWN
    assert "missed the run scheduled at 2026-01-12 02:00 Europe/Berlin" in late.detail


def test_never_pinged_is_due_at_the_first_scheduled_time_after_creation():
    assert hb(datetime(2026, 1, 11, 1, 29, tzinfo=UTC)).outcome == Outcome.UP
    assert hb(datetime(2026, 1, 11, 1, 31, tzinfo=UTC)).outcome == Outcome.DOWN


def test_run_started_but_never_finished():
    start = datetime(2026, 1, 11, 1, 0, 5, tzinfo=UTC)
    with_max = {**NIGHTLY, "max_runtime": "1h"}
    assert (
        hb(start + timedelta(minutes=59), with_max, last_ping_at=start, last_ping_status="start").outcome
        == Outcome.UP
    )
    over = hb(start + timedelta(minutes=61), with_max, last_ping_at=start, last_ping_status="start")
    assert over.outcome == Outcome.DOWN and "max_runtime" in over.detail
    # without max_runtime: it must finish before the next scheduled run (+ grace)
    assert hb(start + timedelta(hours=23), last_ping_at=start, last_ping_status="start").outcome == Outcome.UP
    assert (
        hb(start + timedelta(hours=24, minutes=31), last_ping_at=start, last_ping_status="start").outcome
        == Outcome.DOWN
    )


def test_tz_defaults_to_utc():
    params = validate_heartbeat_params({"schedule": "*/15 * * * *"})
    assert params["tz"] == "UTC" and params["grace_s"] == 60
    pinged = datetime(2026, 1, 11, 1, 0, tzinfo=UTC)
    assert hb(datetime(2026, 1, 11, 1, 16, tzinfo=UTC), params, last_ping_at=pinged).outcome == Outcome.UP
    assert (
        hb(datetime(2026, 1, 11, 1, 16, 1, tzinfo=UTC), params, last_ping_at=pinged).outcome == Outcome.DOWN
    )


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"schedule": "0 25 * * *"}, "check.schedule"),
        ({"schedule": "0 2 * *"}, "check.schedule"),
        ({"schedule": "0 2 * * *", "tz": "Mars/Olympus"}, "check.tz"),
        ({"schedule": "0 2 * * *", "period": "1h"}, "check.schedule"),
        ({"period": "1h", "tz": "UTC"}, "check.tz"),
        ({}, "check.period_s"),
    ],
)
def test_bad_schedules_are_refused(params, field):
    with pytest.raises(CheckConfigError) as err:
        validate_heartbeat_params(params)
    assert any(e.startswith(field) for e in err.value.errors), err.value.errors


async def test_schedule_over_the_api(db_url, tmp_path):
    async with monitored(mon_settings(db_url, tmp_path, {"failure_threshold": 1})) as (guard, scheduler):
        bad = await guard.client.post(
            "/api/v1/components",
            headers=await guard.headers("admin"),
            json={
                "name": "bad",
                "check": {"kind": "heartbeat", "schedule": "0 2 * * *", "tz": "Nowhere/Else"},
            },
        )
        assert bad.status_code == 422, bad.text
        assert "check.tz" in str(bad.json()["error"]["details"])

        check = {"kind": "heartbeat", "schedule": "*/5 * * * *", "grace": "1m", "max_runtime": "2m"}
        ids = {name: (await add_component(guard, name, check))["id"] for name in ("fresh", "missed", "hung")}
        past = utcnow() - timedelta(minutes=20)
        async with guard.session() as session:
            await session.execute(
                update(Component).where(Component.id.in_(list(ids.values()))).values(created_at=past)
            )
            await session.execute(
                update(ComponentState)
                .where(ComponentState.component_id == ids["hung"])
                .values(
                    last_ping_at=utcnow() - timedelta(minutes=3),
                    last_ping_status="start",
                    last_start_at=utcnow() - timedelta(minutes=3),
                )
            )
        token = (
            await guard.client.post(
                "/api/v1/components/fresh/ping-token", headers=await guard.headers("admin")
            )
        ).json()["token"]
        r = await guard.client.post("/api/v1/components/fresh/heartbeat", headers={"X-Ping-Token": token})
        assert r.status_code == 200, r.text
        await scheduler.run_once()
        states = {name: (await status_of(guard, name))["status"] for name in ids}
        assert states == {"fresh": "healthy", "missed": "critical", "hung": "critical"}
        shown = (
            await guard.client.get("/api/v1/components/fresh", headers=await guard.headers("admin"))
        ).json()
        assert shown["check"]["schedule"] == "*/5 * * * *" and shown["check"]["tz"] == "UTC"


def test_schedule_declared_in_yaml(tmp_path):
    path = tmp_path / "guard.yaml"
    path.write_text(
        "components:\n  - name: nightly-etl\n    check:\n      kind: heartbeat\n"
        "      schedule: '30 3 * * 1-5'\n      tz: America/New_York\n      grace: 15m\n"
        "      max_runtime: 2h\n"
    )
    settings = load_settings(path, environ={})
    from app.components.specs import validate_check

    check = validate_check(settings.components[0].check)
    assert check["schedule"] == "30 3 * * 1-5" and check["tz"] == "America/New_York"
    assert check["grace_s"] == 900 and check["max_runtime_s"] == 7200
