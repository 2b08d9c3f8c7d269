"""Maintenance windows: recurring (cron + duration) and opened by a pipeline for its component;
checks keep running inside one, notifications wait; visible in /metrics and on the status page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from sqlalchemy import func, select

from app.alerts.maintenance import AlertMaintenance
from app.alerts.windows import FOREVER, next_window, open_window, sync_declared_windows
from app.config.sections import MaintenanceDeclaration
from app.db.models import CheckResultRecord, Notification, Silence
from tests.monitoring.conftest import add_component, mon_settings, monitored, status_of


def window(**kw):
    base = {
        "starts_at": datetime(2026, 1, 1, tzinfo=UTC),
        "ends_at": FOREVER,
        "schedule": None,
        "tz": None,
        "duration_seconds": None,
    }
    return SimpleNamespace(**{**base, **kw})


def test_recurring_window_opens_on_its_schedule_in_its_zone():
    # Sundays 03:00 in Tokyo (UTC+9, no daylight saving) for 2 h = Saturdays 18:00-20:00 UTC
    w = window(schedule="0 3 * * 0", tz="Asia/Tokyo", duration_seconds=7200)
    saturday = datetime(2026, 3, 7, tzinfo=UTC)
    assert open_window(w, saturday.replace(hour=17, minute=59)) is None
    assert open_window(w, saturday.replace(hour=18, minute=30)) == (
        saturday.replace(hour=18),
        saturday.replace(hour=20),
    )
    assert open_window(w, saturday.replace(hour=20)) is None
    assert next_window(w, saturday.replace(hour=20)) == (
        saturday.replace(hour=18) + timedelta(days=7),
        saturday.replace(hour=20) + timedelta(days=7),
    )
    # bounded recurrence: nothing opens past ends_at, and a window is cut at it
    bounded = window(
        schedule="0 3 * * 0", tz="Asia/Tokyo", duration_seconds=7200, ends_at=saturday.replace(hour=19)
    )
    assert open_window(bounded, saturday.replace(hour=18, minute=30))[1] == saturday.replace(hour=19)
    assert next_window(bounded, saturday.replace(hour=20)) is None


async def test_recurring_windows_over_the_api(guard):
    h = await guard.headers("operator")
    r = await guard.client.post(
        "/api/v1/silences",
        headers=h,
        json={"name": "always", "component": "etl", "schedule": "* * * * *", "duration": "2m"},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["active"] is True and body["schedule"] == "* * * * *" and body["duration_seconds"] == 120
    assert body["tz"] == "UTC" and body["window_ends_at"] and body["source"] == "api"
    r = await guard.client.post(
        "/api/v1/silences",
        headers=h,
        json={
            "name": "tokyo-sunday",
            "component": "warehouse-*",
            "schedule": "0 3 * * 0",
            "tz": "Asia/Tokyo",
            "duration": "2h",
            "comment": "vacuum",
        },
    )
    assert r.status_code == 201, r.text
    nxt = datetime.fromisoformat(r.json()["next_window_at"])
    assert (nxt.weekday(), nxt.hour, nxt.minute) == (5, 18, 0)  # Saturday 18:00 UTC

    for bad, field in (
        ({"schedule": "0 25 * * *", "duration": "1h"}, "schedule"),
        ({"schedule": "0 3 * * *"}, "duration"),
        ({"schedule": "0 3 * * *", "duration": "1h", "tz": "Atlantis/City"}, "tz"),
        ({"tz": "UTC", "duration": "1h"}, "tz"),
        ({}, "ends_at"),
    ):
        r = await guard.client.post("/api/v1/silences", headers=h, json={"component": "etl", **bad})
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["error"]["details"]["fields"][0]["field"] == field
    dup = await guard.client.post(
        "/api/v1/silences", headers=h, json={"name": "always", "schedule": "* * * * *", "duration": "1m"}
    )
    assert dup.status_code == 409
    async with guard.session() as s:
        assert (await s.execute(select(func.count()).select_from(Silence))).scalar_one() == 2


async def test_checks_keep_running_inside_a_window_and_notifications_wait(db_url, tmp_path, http_target):
    settings = mon_settings(
        db_url, tmp_path, {"failure_threshold": 1}, security={"ssrf_allowlist": ["127.0.0.1/32"]}
    )
    async with monitored(settings) as (guard, scheduler):
        admin = await guard.headers("admin")
        r = await guard.client.post(
            "/api/v1/channels",
            headers=admin,
            json={"name": "hook", "kind": "webhook", "config": {"url": http_target.url("/hook")}},
        )
        assert r.status_code == 201, r.text
        await add_component(guard, "etl", {"kind": "http", "url": http_target.url("/500")})
        token = (await guard.client.post("/api/v1/components/etl/ping-token", headers=admin)).json()["token"]
        other = await add_component(guard, "db", {"kind": "http", "url": http_target.url("/ok")})
        other_token = (await guard.client.post("/api/v1/components/db/ping-token", headers=admin)).json()[
            "token"
        ]

        # a pipeline opens the window with its component's ping token (another component's is refused)
        refused = await guard.client.post(
            "/api/v1/components/etl/maintenance",
            json={"duration": "30m"},
            headers={"X-Ping-Token": other_token},
        )
        assert refused.status_code == 401 and other["name"] == "db"
        opened = await guard.client.post(
            "/api/v1/components/etl/maintenance",
            json={"duration": "30m", "comment": "schema migration"},
            headers={"X-Ping-Token": token},
        )
        assert opened.status_code == 201, opened.text
        window_id = opened.json()["id"]
        assert opened.json()["component"] == "etl" and opened.json()["source"] == "component"

        await scheduler.run_once()
        await scheduler.run_once()
        assert (await status_of(guard, "etl"))["status"] == "critical"  # still checked
        async with guard.session() as s:
            results = (await s.execute(select(func.count()).select_from(CheckResultRecord))).scalar_one()
            assert results >= 4
            assert (await s.execute(select(func.count()).select_from(Notification))).scalar_one() == 0
        alerts = (await guard.client.get("/api/v1/alerts", headers=admin)).json()["items"]
        assert [(a["component"], a["status"]) for a in alerts] == [("etl", "silenced")]

        metrics = (await guard.client.get("/metrics")).text
        assert 'pipeline_guard_component_in_maintenance{component="etl"} 1.0' in metrics
        assert 'pipeline_guard_component_in_maintenance{component="db"} 0.0' in metrics
        assert "pipeline_guard_maintenance_windows_open 1.0" in metrics
        page = (await guard.client.get("/status")).text
        assert 'class="tag tag-maintenance"' in page and "schema migration" in page

        closed = await guard.client.delete(
            f"/api/v1/components/etl/maintenance/{window_id}", headers={"X-Ping-Token": token}
        )
        assert closed.status_code == 200 and closed.json()["active"] is False
        await AlertMaintenance(
            guard.runtime.core,
            secret_box=guard.runtime.secret_box,
            published=guard.runtime.alerts.maintenance_published,
        ).run_once()
        alerts = (await guard.client.get("/api/v1/alerts", headers=admin)).json()["items"]
        assert [(a["component"], a["status"]) for a in alerts] == [("etl", "firing")]
        async with guard.session() as s:
            assert (await s.execute(select(func.count()).select_from(Notification))).scalar_one() == 1
        metrics = (await guard.client.get("/metrics")).text
        assert 'pipeline_guard_component_in_maintenance{component="etl"} 0.0' in metrics
        assert "pipeline_guard_maintenance_windows_open 0.0" in metrics


async def test_windows_declared_in_the_config_file(guard):
    state = guard.runtime.core
    nightly = MaintenanceDeclaration(
        name="nightly",
        component="warehouse-*",
        schedule="0 2 * * *",
        tz="Europe/Berlin",
        duration="45m",
        comment="vacuum",
    )
    state.settings.maintenance = [nightly]
    assert await sync_declared_windows(state) == {"created": ["nightly"], "updated": [], "ended": []}
    assert await sync_declared_windows(state) == {"created": [], "updated": [], "ended": []}
    state.settings.maintenance = [nightly.model_copy(update={"duration": 3600.0})]
    assert (await sync_declared_windows(state))["updated"] == ["nightly"]
    listed = (await guard.client.get("/api/v1/silences", headers=await guard.headers("viewer"))).json()[
        "items"
    ]
    assert [(w["name"], w["source"], w["duration_seconds"], w["tz"]) for w in listed] == [
        ("nightly", "config", 3600.0, "Europe/Berlin")
    ]
    state.settings.maintenance = []
    assert (await sync_declared_windows(state))["ended"] == ["nightly"]
    listed = (await guard.client.get("/api/v1/silences", headers=await guard.headers("viewer"))).json()[
        "items"
    ]
    assert listed == []
