"""Each check kind through the real scheduler and storage, against real loopback targets."""

from __future__ import annotations

import sys
import time

from prometheus_client import generate_latest
from sqlalchemy import func, select

from app.db.models import CheckResultRecord, HealthTransitionRecord, Incident
from app.platform.events import HealthTransition, IncidentClosed, IncidentOpened
from tests.monitoring.conftest import add_component, mon_settings, monitored, status_of


async def run(scheduler, times: int = 2):
    for _ in range(times):
        await scheduler.run_once()


async def test_http_tcp_command_kinds(db_url, tmp_path, http_target, garbage_target, closed_port):
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        cases = {
            "http-ok": ({"kind": "http", "url": http_target.url("/ok")}, "healthy"),
            "http-500": ({"kind": "http", "url": http_target.url("/500")}, "critical"),
            "http-hang": ({"kind": "http", "url": http_target.url("/hang"), "timeout": 0.5}, "critical"),
            "http-huge": (
                {"kind": "http", "url": http_target.url("/huge"), "body_contains": "zzz"},
                "critical",
            ),
            "http-garbage": ({"kind": "http", "url": garbage_target.url("/")}, "critical"),
            "http-closed": ({"kind": "http", "url": f"http://127.0.0.1:{closed_port}/"}, "critical"),
            "tcp-open": ({"kind": "tcp", "host": "127.0.0.1", "port": http_target.port}, "healthy"),
            "tcp-closed": ({"kind": "tcp", "host": "127.0.0.1", "port": closed_port}, "critical"),
            "cmd-ok": ({"kind": "command", "argv": [sys.executable, "-c", "pass"]}, "healthy"),
            "cmd-fail": (
                {"kind": "command", "argv": [sys.executable, "-c", "raise SystemExit(1)"]},
                "critical",
            ),
            "cmd-hang": (
                {
                    "kind": "command",
                    "argv": [sys.executable, "-c", "import time; time.sleep(60)"],
                    "timeout": 0.5,
                },
                "critical",
            ),
            "cmd-loud": (
                {
                    "kind": "command",
                    "argv": [
                        sys.executable,
                        "-c",
                        "import sys; sys.stdout.write('x'*3_000_000); sys.exit(3)",
                    ],
                },
                "critical",
            ),
        }
        for name, (check, _) in cases.items():
            await add_component(guard, name, check)
        await run(scheduler)
        for name, (_, expected) in cases.items():
            state = await status_of(guard, name)
            assert state["status"] == expected, (name, state["last_detail"])
        loud = await status_of(guard, "cmd-loud")
        assert len(loud["last_detail"]) < 1000 and "exit 3" in loud["last_detail"]
        assert guard.runtime.component_health["http-ok"] == "healthy"
        health = (await guard.client.get("/health")).json()
        assert health["components"]["http-500"] == "critical"


async def test_transitions_incidents_and_events(db_url, tmp_path, http_target):
    seen = []
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        for event_type in (HealthTransition, IncidentOpened, IncidentClosed):

            async def handler(event, session, _t=event_type):
                assert session is not None
                seen.append(event)

            guard.runtime.events.subscribe(event_type, handler)
        await guard.client.get(http_target.url("/set?ok=1")) if False else None
        await add_component(guard, "api", {"kind": "http", "url": http_target.url("/toggle")}, critical=True)
        import aiohttp

        async with aiohttp.ClientSession() as s:
            await run(scheduler, 1)
            await (await s.get(http_target.url("/set?ok=0"))).read()
            await run(scheduler, 2)
            assert guard.runtime.overall_health() == "critical"
            await (await s.get(http_target.url("/set?ok=1"))).read()
            await run(scheduler, 1)
        kinds = [(type(e).__name__, getattr(e, "current", None)) for e in seen]
        assert kinds == [
            ("HealthTransition", "healthy"),
            ("IncidentOpened", None),
            ("HealthTransition", "critical"),
            ("HealthTransition", "healthy"),
            ("IncidentClosed", None),
        ]
        critical = seen[2]
        assert critical.previous == "healthy" and "2 consecutive failed checks" in critical.reason
        assert critical.incident_id == seen[1].incident_id and critical.critical
        async with guard.session() as session:
            rows = (
                (await session.execute(select(HealthTransitionRecord).order_by(HealthTransitionRecord.id)))
                .scalars()
                .all()
            )
            assert [r.current for r in rows] == ["healthy", "critical", "healthy"]
            assert len(rows[1].result_ids) == 2 and rows[1].summary["recent_outcomes"].endswith("dd")
            incident = (await session.execute(select(Incident))).scalar_one()
            assert incident.closed_at is not None and incident.worst_status == "critical"
            assert (
                await session.execute(select(func.count()).select_from(CheckResultRecord))
            ).scalar_one() == 4


async def test_hanging_target_does_not_delay_others(db_url, tmp_path, http_target):
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        await add_component(guard, "stuck", {"kind": "http", "url": http_target.url("/hang"), "timeout": 2})
        await add_component(guard, "fine", {"kind": "http", "url": http_target.url("/ok"), "interval": 0.2})
        await scheduler.refresh()
        scheduler.start_background()  # the real dispatcher
        for cid in list(scheduler.entries):
            scheduler.request_check(cid)
        started = time.monotonic()
        while (
            http_target.hits.get("/hang", 0) < 1 or scheduler.status_of(_id(scheduler, "fine")) != "healthy"
        ):
            await __import__("asyncio").sleep(0.05)
        # "fine" became healthy while "stuck" was still hanging (its 2 s timeout had not fired).
        assert scheduler.status_of(_id(scheduler, "stuck")) == "unknown"
        assert time.monotonic() - started < 2


def _id(scheduler, name):
    return next(e.component_id for e in scheduler.entries.values() if e.name == name)


async def test_api_changes_apply_without_restart_and_metrics_stay_bounded(db_url, tmp_path, http_target):
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        admin = await guard.headers("admin")
        await add_component(guard, "svc", {"kind": "http", "url": http_target.url("/500")})
        await run(scheduler)
        assert (await status_of(guard, "svc"))["status"] == "critical"
        r = await guard.client.patch(
            "/api/v1/components/svc",
            json={"check": {"kind": "http", "url": http_target.url("/ok")}},
            headers=admin,
        )
        assert r.status_code == 200
        await run(scheduler, 1)
        assert (await status_of(guard, "svc"))["status"] == "healthy"
        text = generate_latest(guard.runtime.metrics.registry).decode()
        assert 'pipeline_guard_component_health{component="svc"} 1.0' in text
        assert 'pipeline_guard_checks_total{component="svc",outcome="down"}' in text
        assert (await guard.client.delete("/api/v1/components/svc", headers=admin)).status_code == 204
        await run(scheduler, 1)
        text = generate_latest(guard.runtime.metrics.registry).decode()
        assert 'component="svc"' not in text
        assert "svc" not in guard.runtime.component_health


async def test_recovery_action_grace_and_fast_recheck(db_url, tmp_path, http_target):
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        c = await add_component(guard, "worker", {"kind": "http", "url": http_target.url("/500")})
        await run(scheduler)
        assert scheduler.status_of(c["id"]) == "critical"
        assert await scheduler.note_recovery_action(c["id"], "restart") == "recovering"
        await run(scheduler, 3)  # failures during the grace do not count
        assert scheduler.status_of(c["id"]) == "recovering"
        assert scheduler.thresholds_for(c["id"]).success_threshold == 1
        r = await guard.client.get("/api/v1/components/worker/history", headers=await guard.headers("viewer"))
        assert [t["current"] for t in r.json()["transitions"]][:1] == ["recovering"]


async def test_a_stored_unusable_interval_falls_back_and_stops_nothing(db_url, tmp_path, http_target):
    """A row written before durations were validated may hold a NaN interval: the scheduler uses the
    default for it, and the other components go on being probed by the real dispatcher."""
    import asyncio

    from sqlalchemy import update

    from app.db.models import Component

    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        await add_component(guard, "old-row", {"kind": "http", "url": http_target.url("/ok")})
        await add_component(guard, "fine", {"kind": "http", "url": http_target.url("/ok"), "interval": 0.2})
        async with guard.session() as session:
            await session.execute(
                update(Component)
                .where(Component.name == "old-row")
                .values(
                    check={"kind": "http", "url": http_target.url("/ok"), "interval": "NaN", "timeout": "inf"}
                )
            )
            await session.commit()
        await scheduler.refresh()
        old = next(e for e in scheduler.entries.values() if e.name == "old-row")
        assert old.interval == guard.runtime.settings.monitoring.interval
        assert old.timeout == guard.runtime.settings.monitoring.health_check_timeout
        scheduler.start_background()
        before = http_target.hits.get("/ok", 0)
        for _ in range(200):  # the dispatcher keeps probing "fine" every 0.2 s
            if http_target.hits.get("/ok", 0) >= before + 3:
                break
            await asyncio.sleep(0.05)
        assert http_target.hits.get("/ok", 0) >= before + 3
