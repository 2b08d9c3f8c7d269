"""A heartbeat component never pinged is shown as `new` (API, status, status page, /metrics), with no
uptime: not "Operational 100 %". Its first ping makes it an ordinary component."""

from __future__ import annotations

from tests.monitoring.conftest import add_component, mon_settings, monitored


async def test_new_until_the_first_ping_everywhere(db_url, tmp_path):
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        await add_component(guard, "nightly", {"kind": "heartbeat", "period": "1h"})
        await add_component(guard, "web", {"kind": "tcp", "host": "127.0.0.1", "port": 9})
        await scheduler.run_once()
        viewer = await guard.headers("viewer")
        component = (await guard.client.get("/api/v1/components/nightly", headers=viewer)).json()
        assert component["state"]["status"] == "new" and component["state"]["last_ping_at"] is None
        status = {
            c["name"]: c
            for c in (await guard.client.get("/api/v1/status", headers=viewer)).json()["components"]
        }
        assert status["nightly"]["status"] == "new" and status["nightly"]["uptime_24h"] is None
        assert status["web"]["status"] != "new"
        page = (await guard.client.get("/status")).text
        assert 'data-component="nightly" data-status="new"' in page and "Waiting for the first ping" in page
        metrics = (await guard.client.get("/metrics")).text
        assert 'pipeline_guard_component_new{component="nightly"} 1.0' in metrics
        assert 'pipeline_guard_component_new{component="web"}' not in metrics

        token = (
            await guard.client.post(
                "/api/v1/components/nightly/ping-token", headers=await guard.headers("admin")
            )
        ).json()["token"]
        assert (await guard.client.get(f"/ping/{token}")).status_code == 200
        await scheduler.run_once()
        component = (await guard.client.get("/api/v1/components/nightly", headers=viewer)).json()
        assert component["state"]["status"] == "healthy" and component["state"]["last_ping_at"]
        assert 'data-component="nightly" data-status="healthy"' in (await guard.client.get("/status")).text
        assert (
            'pipeline_guard_component_new{component="nightly"}'
            not in (await guard.client.get("/metrics")).text
        )


async def test_a_job_that_missed_its_first_deadline_is_not_new(db_url, tmp_path):
    from datetime import timedelta

    from sqlalchemy import update

    from app.db.models import Component
    from app.db.types import utcnow

    async with monitored(mon_settings(db_url, tmp_path, {"failure_threshold": 1})) as (guard, scheduler):
        await add_component(guard, "nightly", {"kind": "heartbeat", "period": "1m", "grace": "10s"})
        async with guard.session() as session:
            await session.execute(
                update(Component)
                .where(Component.name == "nightly")
                .values(created_at=utcnow() - timedelta(minutes=10))
            )
        await scheduler.run_once()
        component = (
            await guard.client.get("/api/v1/components/nightly", headers=await guard.headers("viewer"))
        ).json()
        assert component["state"]["status"] == "critical"
        assert (
            'pipeline_guard_component_new{component="nightly"}'
            not in (await guard.client.get("/metrics")).text
        )
