"""The status page's view model and HTML, on both dialects, from real checks against loopback targets."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app.alerts.service import AlertService
from app.db.models import CheckRollup, Component, HealingAttempt
from app.db.types import utcnow
from app.monitoring.rollups import floor_hour
from app.statuspage.service import StatusPageService, bucket_starts
from tests.monitoring.conftest import add_component, mon_settings, monitored

EVIL = '<script>alert("x")</script>'


async def _seed(guard, scheduler, http_target) -> dict[str, int]:
    await add_component(guard, "api", {"kind": "http", "url": http_target.url("/ok")}, critical=True)
    await add_component(guard, "feature-store", {"kind": "http", "url": http_target.url("/500")})
    for _ in range(2):  # failure_threshold 2: the failing one becomes critical
        await scheduler.run_once()
    now = utcnow()
    async with guard.session() as session:
        ids = dict((await session.execute(select(Component.name, Component.id))).all())
        # Older history, as the rollup loop would have written it: 3 h ago half failed, 3 days ago all up.
        session.add(
            CheckRollup(
                component_id=ids["api"],
                hour=floor_hour(now) - timedelta(hours=3),
                count=10,
                failures=5,
                degraded=0,
            )
        )
        session.add(
            CheckRollup(
                component_id=ids["api"],
                hour=floor_hour(now) - timedelta(days=3),
                count=100,
                failures=0,
                degraded=0,
            )
        )
        await AlertService(session, guard.runtime.settings).raise_alert(
            component="feature-store", severity="critical", message=f"disk full {EVIL}", source="api"
        )
        session.add(
            HealingAttempt(
                incident_key="m:seed",
                attempt_number=1,
                component="feature-store",
                strategy="notify_only",
                state="dry_run",
                trigger="manual",
                detail=f"would notify {EVIL}",
            )
        )
    return ids


async def test_view_model_and_html(db_url, tmp_path, http_target):
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        await _seed(guard, scheduler, http_target)
        async with guard.session() as session:
            page = await StatusPageService(session, guard.runtime).build()

        assert page.overall == "critical" or page.overall == "degraded"
        by_name = {c.name: c for c in page.components}
        assert set(by_name) == {"api", "feature-store"}
        api, fs = by_name["api"], by_name["feature-store"]
        assert api.status == "healthy" and api.critical
        assert fs.status == "critical" and fs.incident_id is not None
        assert len(api.bars_24h) == 24 and len(api.bars_7d) == 7
        # The current hour holds the two raw checks; 3 h ago the rollup's 50 %.
        assert api.bars_24h[-1].checks == 2 and api.bars_24h[-1].level == "up"
        assert api.bars_24h[-4].checks == 10 and api.bars_24h[-4].percent == 50.0
        assert api.bars_24h[-4].level == "down"
        assert api.bars_24h[0].level == "none"
        assert fs.bars_24h[-1].failures == 2 and fs.bars_24h[-1].level == "down"
        # 7 d: the day holding "3 h ago" has its 10 checks (+ today's 2 raw ones), 3 days ago 100.
        three_hours_ago = api.bars_24h[-4].start
        day_index = max(i for i, s in enumerate(api.bars_7d) if s.start <= three_hours_ago)
        assert api.bars_7d[-1].checks == 2 + (10 if day_index == 6 else 0)
        assert api.bars_7d[day_index].failures == 5
        assert sum(s.checks for s in api.bars_7d) == 112 and api.bars_7d[-4].checks >= 100
        assert api.uptime_7d == round(100 * (112 - 5) / 112, 3)
        assert api.uptime_24h == round(100 * 7 / 12, 3)
        # The seeded alert and the health alert monitoring raised (the alert handlers are always live).
        assert {a.component for a in page.alerts} == {"feature-store"} and page.alerts_total >= 1
        assert page.healings[0].strategy == "notify_only" and page.healings[0].state == "dry_run"

        r = await guard.client.get("/status")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        html = r.text
        assert '<meta http-equiv="refresh" content="30">' in html
        assert 'name="viewport"' in html
        assert 'data-component="api"' in html and 'data-component="feature-store"' in html
        assert "disk full" in html and "notify_only" in html
        assert EVIL not in html and "&lt;script&gt;" in html
        assert html.count('class="seg ') == 2 * (24 + 7)
        css = await guard.client.get("/static/status/status.css")
        assert css.status_code == 200 and ".bars" in css.text


async def test_empty_guard_renders(guard):
    r = await guard.client.get("/status")
    assert r.status_code == 200
    assert "No components are being checked yet." in r.text
    assert "No open alerts." in r.text and "No healing attempts yet." in r.text
    assert "All systems operational" in r.text


def test_bucket_starts_are_aligned():
    now = utcnow().replace(minute=17)
    hours = bucket_starts(now, timedelta(hours=1), 24)
    assert hours[-1] == floor_hour(now) and hours[0] == floor_hour(now) - timedelta(hours=23)
    days = bucket_starts(now, timedelta(days=1), 7)
    assert days[-1].hour == 0 and days[-1] <= now < days[-1] + timedelta(days=1) and len(days) == 7


async def test_private_status_page(db_url, tmp_path):
    from tests.conftest import make_settings, running_guard

    settings = make_settings(db_url, tmp_path, security={"status_page_public": False})
    async with running_guard(settings) as guard:
        anonymous = await guard.client.get("/status")
        assert anonymous.status_code == 401 and anonymous.headers["content-type"].startswith("text/html")
        assert "requires a login" in anonymous.text and 'href="/docs"' in anonymous.text
        bad = await guard.client.get("/status", headers={"Authorization": "Bearer not-a-token"})
        assert bad.status_code == 401 and "invalid or expired" in bad.text
        ingest = await guard.client.get("/status", headers=await guard.headers("ingest"))
        assert ingest.status_code == 403 and "monitor_health" in ingest.text
        viewer = await guard.client.get("/status", headers=await guard.headers("viewer"))
        assert viewer.status_code == 200 and "Pipeline Guard status" in viewer.text
