"""Numbers a check reports become metric points of its component (readable over the metrics API)."""

from __future__ import annotations

import sys

from tests.monitoring.conftest import add_component, mon_settings, monitored


async def latest(guard, component: str) -> dict[str, float]:
    r = await guard.client.get(
        "/api/v1/metrics/latest", params={"component": component}, headers=await guard.headers("operator")
    )
    assert r.status_code == 200, r.text
    return {row["metric_name"]: row["value"] for row in r.json()}


async def test_check_numbers_become_metric_points(db_url, tmp_path, http_target):
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        await add_component(guard, "web", {"kind": "http", "url": http_target.url("/ok")})
        await add_component(
            guard, "job", {"kind": "command", "argv": [sys.executable, "-c", "raise SystemExit(3)"]}
        )
        await scheduler.run_once()
        assert await latest(guard, "web") == {"status_code": 200.0}
        assert await latest(guard, "job") == {"exit_code": 3.0}

        # every run adds a point (the series grows; the summary counts them)
        await scheduler.run_once()
        r = await guard.client.get(
            "/api/v1/metrics",
            params={"component": "web", "metric_name": "status_code"},
            headers=await guard.headers("operator"),
        )
        assert r.status_code == 200, r.text
        body = r.json()
        rows = body["items"] if isinstance(body, dict) else body
        assert len(rows) == 2 and {row["value"] for row in rows} == {200.0}
