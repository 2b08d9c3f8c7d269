"""Config-declared components, state and history across a restart, uptime from rollups, status API."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import func, insert, select, update

from app.db.models import CheckResultRecord, CheckRollup, ComponentState, Incident
from app.db.types import utcnow
from app.monitoring.rollups import apply_retention, floor_hour, roll_up
from tests.monitoring.conftest import add_component, mon_settings, monitored, status_of

STALL_S = 2.0  # the database held this long; the results observed during it wait most of it


async def test_config_components_synced_and_api_edit_refused(db_url, tmp_path, http_target):
    declared = [
        {
            "name": "db",
            "critical": True,
            "check": {"kind": "tcp", "host": "127.0.0.1", "port": http_target.port},
        },
        {"name": "api", "check": {"kind": "http", "url": http_target.url("/ok")}},
    ]
    async with monitored(mon_settings(db_url, tmp_path, components=declared)) as (guard, scheduler):
        admin = await guard.headers("admin")
        r = await guard.client.get("/api/v1/components/db", headers=admin)
        assert r.json()["source"] == "config" and r.json()["critical"] is True
        r = await guard.client.patch("/api/v1/components/db", json={"description": "x"}, headers=admin)
        assert r.status_code == 409 and "configuration file" in r.json()["error"]["message"]
        assert (await guard.client.delete("/api/v1/components/api", headers=admin)).status_code == 409
        await scheduler.run_once()
        assert guard.runtime.component_health == {"db": "healthy", "api": "healthy"}
        assert "db" in guard.runtime.critical_components
    # Restart with "api" removed from the file and "db" changed: api is disabled (kept), db updated.
    declared = [
        {
            "name": "db",
            "critical": False,
            "check": {"kind": "tcp", "host": "127.0.0.1", "port": http_target.port},
        }
    ]
    async with monitored(mon_settings(db_url, tmp_path, components=declared)) as (guard, scheduler):
        admin = await guard.headers("admin")
        api = (await guard.client.get("/api/v1/components/api", headers=admin)).json()
        db = (await guard.client.get("/api/v1/components/db", headers=admin)).json()
        assert api["enabled"] is False and db["critical"] is False and db["version"] == 2
        await scheduler.run_once()
        assert set(guard.runtime.component_health) == {"db"}


async def test_state_and_history_survive_a_restart(db_url, tmp_path, http_target):
    settings = mon_settings(db_url, tmp_path, {"flap_window": 10, "flap_threshold": 9})
    async with monitored(settings) as (guard, scheduler):
        await add_component(guard, "svc", {"kind": "http", "url": http_target.url("/500")}, critical=True)
        for _ in range(3):
            await scheduler.run_once()
        before = await status_of(guard, "svc")
        assert before["status"] == "critical" and before["consecutive_failures"] == 3
    async with monitored(settings) as (guard, scheduler):
        assert guard.runtime.component_health == {"svc": "critical"}
        assert guard.runtime.overall_health() == "critical"
        cid = next(iter(scheduler.tracked))
        tracked = scheduler.tracked[cid]
        assert tracked.machine.recent == "ddd" and tracked.machine.consecutive_failures == 3
        assert tracked.incident_id is not None
        viewer = await guard.headers("viewer")
        history = (await guard.client.get("/api/v1/components/svc/history", headers=viewer)).json()
        assert [t["current"] for t in history["transitions"]] == ["critical"]
        assert len(history["recent_results"]) == 3
        # One more failure continues the same incident; the fix closes it.
        await scheduler.run_once()
        r = await guard.client.patch(
            "/api/v1/components/svc",
            json={"check": {"kind": "http", "url": http_target.url("/ok")}},
            headers=await guard.headers("admin"),
        )
        assert r.status_code == 200
        await scheduler.run_once()
        status = (await guard.client.get("/api/v1/status", headers=viewer)).json()
        svc = status["components"][0]
        assert (
            status["overall_health"] == "healthy"
            and svc["status"] == "healthy"
            and svc["current_incident"] is None
        )
        assert svc["uptime_24h"] == 20.0
        async with guard.session() as session:
            incidents = (await session.execute(select(Incident))).scalars().all()
            assert len(incidents) == 1 and incidents[0].closed_at is not None


async def test_uptime_from_rollups_and_retention(db_url, tmp_path, http_target):
    async with monitored(mon_settings(db_url, tmp_path, {"results_retention": 3600 * 5})) as (
        guard,
        scheduler,
    ):
        c = await add_component(guard, "svc", {"kind": "http", "url": http_target.url("/ok")})
        now = utcnow()
        rows = []
        # 10 past hours, 10 results each, 1 failure per hour. Start two hours back: the hour that just
        # ended is only rolled up a minute after it ends, and this test must not depend on the clock.
        for hours_ago in range(2, 12):
            hour = floor_hour(now) - timedelta(hours=hours_ago)
            for i in range(10):
                rows.append(
                    {
                        "component_id": c["id"],
                        "observed_at": hour + timedelta(minutes=5 * i),
                        "outcome": "down" if i == 0 else "up",
                        "latency_ms": float(10 + i),
                        "detail": "",
                    }
                )
        async with guard.session() as session:
            await session.execute(insert(CheckResultRecord), rows)
        await scheduler.run_once()  # one live result, up
        # Hours processed: the ten with data plus the empty one that just ended, unless that one is
        # still within its minute of grace for late results.
        assert await roll_up(guard.runtime) in (10, 11)
        report = await apply_retention(guard.runtime)
        # Everything older than the 5 h raw retention goes (rolled up already); the rollups stay.
        assert report["results"] == sum(
            1 for row in rows if row["observed_at"] < utcnow() - timedelta(hours=5)
        )
        async with guard.session() as session:
            rollup = (
                (await session.execute(select(CheckRollup).order_by(CheckRollup.hour.desc())))
                .scalars()
                .first()
            )
            assert (rollup.count, rollup.failures, rollup.latency_min_ms, rollup.latency_max_ms) == (
                10,
                1,
                10.0,
                19.0,
            )
            assert rollup.latency_p95_ms == 19.0
            assert (await session.execute(select(func.count()).select_from(CheckRollup))).scalar_one() == 10
        viewer = await guard.headers("viewer")
        r = (await guard.client.get("/api/v1/components/svc/uptime?window=24h", headers=viewer)).json()
        assert r["source"] == "rollups+raw" and r["checks"] == 101 and r["failures"] == 10
        assert r["uptime_percent"] == round(100 * 91 / 101, 3)
        r = (await guard.client.get("/api/v1/components/svc/uptime?window=1h", headers=viewer)).json()
        assert r["source"] == "raw" and r["checks"] >= 1
        assert (
            await guard.client.get("/api/v1/components/svc/uptime?window=2y", headers=viewer)
        ).status_code == 422
        history = (await guard.client.get("/api/v1/components/svc/history", headers=viewer)).json()
        assert len(history["hourly"]) == 10


async def test_detailed_status_and_sections(db_url, tmp_path, http_target):
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        await add_component(guard, "a", {"kind": "http", "url": http_target.url("/ok")})
        await add_component(guard, "b", {"kind": "http", "url": http_target.url("/500")})

        async def healing_stats(state):
            return {"attempts": 0}

        guard.runtime.status_sections.register("healing", healing_stats)
        await scheduler.run_once()
        await scheduler.run_once()
        r = await guard.client.get("/api/v1/status/detailed", headers=await guard.headers("viewer"))
        body = r.json()
        assert r.status_code == 200 and body["counts_by_status"] == {"healthy": 1, "critical": 1}
        assert body["healing"] == {"attempts": 0} and body["open_incidents"] == 1
        # the checks' status codes were stored as metric points: the metrics cache saw those writes
        assert body["cache"]["invalidations"] >= 1 and body["cache"]["hits"] == 0
        assert body["scheduler"]["checks_run"] == 4 and body["scheduler"]["components_scheduled"] == 2
        assert body["overall_health"] == "degraded"
        assert (await guard.client.get("/api/v1/status")).status_code == 401
        r = await guard.client.get("/api/v1/status", headers=await guard.headers("ingest"))
        assert r.status_code == 403


async def test_a_stalled_database_shows_as_the_results_write_lag(db_url, tmp_path, http_target):
    """Probes on time, results stored late: the write lag (observation to commit) says so, in the
    detailed status and in /metrics, where the scheduler's lag (probe start) cannot."""
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        await add_component(guard, "a", {"kind": "http", "url": http_target.url("/ok")})
        await scheduler.run_once()
        viewer = await guard.headers("viewer")
        quick = (await guard.client.get("/api/v1/status/detailed", headers=viewer)).json()["scheduler"]
        assert quick["result_write_lag_p99_seconds"] >= 0
        async with guard.session() as blocker:
            # Held until the block ends: the state row's lock (Postgres), the write lock (SQLite).
            await blocker.execute(update(ComponentState).values(last_detail="held by the test"))
            probing = asyncio.create_task(scheduler.run_once())
            await asyncio.sleep(STALL_S)
            assert not probing.done()
        await probing
        stalled = (await guard.client.get("/api/v1/status/detailed", headers=viewer)).json()["scheduler"]
        assert stalled["result_write_lag_p99_seconds"] >= STALL_S / 2
        # the probes themselves started on time
        assert stalled["scheduler_lag_p99_seconds"] < stalled["result_write_lag_p99_seconds"] - STALL_S / 4
        exposition = (await guard.client.get("/metrics")).text
        [gauge] = [
            float(line.split()[-1])
            for line in exposition.splitlines()
            if line.startswith("pipeline_guard_result_write_lag_seconds ")
        ]
        assert gauge >= STALL_S / 2
