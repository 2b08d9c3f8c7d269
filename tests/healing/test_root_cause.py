"""Dependencies and root cause through the real code: the scheduler (driven by the test), the
recorder, the root-cause loop, the healing engine, the alert handlers and real HTTP targets on
127.0.0.1 (one per component) whose ``/restart`` the ``webhook`` strategy calls.

db <- etl <- report: when db is down, etl and report fail too; only db notifies and is healed."""

from __future__ import annotations

import contextlib

from sqlalchemy import select

from app.db.models import Alert, Component, ComponentState, Incident, Notification
from app.db.models.healing import HealingAttempt
from tests.healing.conftest import wait_until
from tests.healing.test_incident_lifecycle import Service, service_app
from tests.monitoring.conftest import mon_settings, monitored
from tests.support.loopback import serve_app


class Graph:
    def __init__(self, guard, scheduler, engine, services: dict[str, Service]) -> None:
        from app.healing.rootcause_loop import RootCauseLoop

        self.guard, self.scheduler, self.engine, self.svc = guard, scheduler, engine, services
        core = guard.runtime.core
        self.loop = RootCauseLoop(core.sessionmaker, core.settings, core.metrics, wake=engine.wake)

    async def add(self, name: str, depends_on: list[str], **check) -> None:
        svc = self.svc[name]
        body = {
            "name": name,
            "depends_on": depends_on,
            "check": {"kind": "http", "url": svc.url("/health"), "timeout": 2, **check},
            "recovery": {"strategies": [{"kind": "webhook", "url": svc.url("/restart")}], "grace_period": 0},
        }
        r = await self.guard.client.post(
            "/api/v1/components", headers=await self.guard.headers("admin"), json=body
        )
        assert r.status_code == 201, r.text

    async def tick(self, n: int = 1) -> None:
        """Checks, then the root-cause pass, then one healing decision (waiting for what it started)."""
        for _ in range(n):
            await self.scheduler.run_once()
            await self.loop.run_once()
            for attempt_id in await self.engine.evaluate():
                await wait_until(lambda a=attempt_id: self._acted(a), timeout=30)

    async def _acted(self, attempt_id: int) -> bool:
        async with self.guard.session() as session:
            return (await session.get(HealingAttempt, attempt_id)).state != "running"

    async def rows(self, model, *where):
        async with self.guard.session() as session:
            return list((await session.execute(select(model).where(*where))).unique().scalars())

    async def incidents(self, name: str) -> list[Incident]:
        async with self.guard.session() as session:
            cid = (await session.execute(select(Component.id).where(Component.name == name))).scalar_one()
            return list(
                (
                    await session.execute(
                        select(Incident).where(Incident.component_id == cid).order_by(Incident.id)
                    )
                ).scalars()
            )

    async def notified(self, name: str) -> list[str]:
        """Kinds of the notifications written for ``name``'s alerts."""
        async with self.guard.session() as session:
            rows = (
                (
                    await session.execute(
                        select(Notification.kind)
                        .join(Alert, Alert.id == Notification.alert_id)
                        .where(Alert.component == name)
                        .order_by(Notification.id)
                    )
                )
                .scalars()
                .all()
            )
            return list(rows)

    async def attempts(self, name: str) -> list[HealingAttempt]:
        return await self.rows(HealingAttempt, HealingAttempt.component == name)

    async def status(self, name: str) -> str:
        async with self.guard.session() as session:
            cid = (await session.execute(select(Component.id).where(Component.name == name))).scalar_one()
            return (await session.get(ComponentState, cid)).status


@contextlib.asynccontextmanager
async def graph_guard(db_url, tmp_path):
    services = {name: Service() for name in ("db", "etl", "report")}
    settings = mon_settings(
        db_url,
        tmp_path,
        healing={"max_concurrent": 3, "max_concurrent_per_group": 3},
        security={"ssrf_allowlist": ["127.0.0.1/32"]},
    )
    async with contextlib.AsyncExitStack() as stack:
        for svc in services.values():
            svc.port = await stack.enter_async_context(serve_app(service_app(svc)))
        guard, scheduler = await stack.enter_async_context(monitored(settings))
        engine = guard.runtime.healing.engine
        g = Graph(guard, scheduler, engine, services)
        r = await guard.client.post(
            "/api/v1/channels",
            headers=await guard.headers("admin"),
            json={"name": "hook", "kind": "webhook", "config": {"url": "http://127.0.0.1:9/hook"}},
        )
        assert r.status_code == 201, r.text
        await g.add("db", [])
        await g.add("etl", ["db"])
        await g.add("report", ["etl"])
        try:
            yield g
        finally:
            await engine.stop()


def down(g: Graph, *names: str) -> None:
    for name in names:
        g.svc[name].mode = "down"


def up(g: Graph, *names: str) -> None:
    for name in names:
        g.svc[name].mode = "up"


async def test_root_failure_notifies_and_heals_only_the_root(db_url, tmp_path):
    async with graph_guard(db_url, tmp_path) as g:
        await g.tick()
        down(g, "db", "etl", "report")
        g.svc["db"].after_restart = "up"
        await g.tick(2)  # failure_threshold 2: all three fail together
        [db_inc] = await g.incidents("db")
        [etl_inc] = await g.incidents("etl")
        [rep_inc] = await g.incidents("report")
        assert (etl_inc.caused_by, etl_inc.suppressed) == ("db", True)
        assert (rep_inc.caused_by, rep_inc.suppressed) == ("db", True)
        assert db_inc.caused_by is None and not db_inc.suppressed
        # The restart of db happened (one attempt), none for the children.
        assert g.svc["db"].restarts == 1
        assert [a.component for a in await g.attempts("db")] == ["db"]
        assert await g.attempts("etl") == [] and await g.attempts("report") == []
        assert await g.notified("db") == ["firing"]
        assert await g.notified("etl") == [] and await g.notified("report") == []
        [db_alert] = await g.rows(Alert, Alert.component == "db")
        assert db_alert.meta["affected"] == ["etl", "report"]
        assert "affects: etl, report" in db_alert.message
        # The API shows the attribution on the incident and on the alert.
        h = await g.guard.headers("viewer")
        r = await g.guard.client.get("/api/v1/alerts", headers=h, params={"component": "etl"})
        assert r.status_code == 200, r.text
        [etl_alert] = [a for a in r.json()["items"] if a["component"] == "etl"]
        assert etl_alert["caused_by"] == "db"
        r = await g.guard.client.get("/api/v1/status", headers=h)
        assert r.status_code == 200, r.text
        body = r.json()
        [cause] = body["root_causes"]
        assert (cause["component"], cause["affected"]) == ("db", ["etl", "report"])
        incidents = {c["name"]: c["current_incident"] for c in body["components"]}
        assert incidents["etl"]["caused_by"] == "db" and incidents["etl"]["suppressed"] is True
        assert incidents["report"]["caused_by"] == "db"
        page = await g.guard.client.get("/status")  # the public status page shows the same
        assert page.status_code == 200
        assert 'data-root="db"' in page.text and "affects etl, report" in page.text
        assert "caused by db" in page.text
        # db is back (restarted); the children recover by themselves once db is up.
        up(g, "etl", "report")
        await g.tick(3)
        for name in ("db", "etl", "report"):
            assert await g.status(name) == "healthy"
        for name in ("etl", "report"):
            assert all(i.closed_at is not None for i in await g.incidents(name))
        assert await g.attempts("etl") == [] and await g.attempts("report") == []
        assert await g.notified("etl") == [] and await g.notified("report") == []
        assert g.svc["etl"].restarts == 0 and g.svc["report"].restarts == 0


async def test_child_failing_before_its_root_is_held_then_attributed(db_url, tmp_path):
    async with graph_guard(db_url, tmp_path) as g:
        await g.tick()
        down(g, "etl", "report")
        g.svc["db"].after_restart = "up"
        await g.tick(2)  # etl and report notice first (db looks fine for now)
        [etl_inc] = await g.incidents("etl")
        assert etl_inc.suppressed and etl_inc.caused_by is None and etl_inc.held_until is not None
        down(g, "db")
        await g.tick(2)  # the hold covers db's own detection: now db is the root
        [etl_inc] = await g.incidents("etl")
        assert (etl_inc.caused_by, etl_inc.suppressed) == ("db", True)
        [rep_inc] = await g.incidents("report")  # attributed to etl first, then to the deeper root
        assert (rep_inc.caused_by, rep_inc.suppressed) == ("db", True)
        assert await g.notified("etl") == [] and await g.attempts("etl") == []
        assert await g.notified("report") == [] and await g.attempts("report") == []
        assert len(await g.attempts("db")) == 1


async def test_held_child_with_a_healthy_root_becomes_its_own(db_url, tmp_path):
    async with graph_guard(db_url, tmp_path) as g:
        await g.tick()
        down(g, "etl")
        await g.tick(2)
        [etl_inc] = await g.incidents("etl")
        assert etl_inc.suppressed
        await g.tick()  # db passes a check after etl's incident opened: db is known healthy
        [etl_inc] = await g.incidents("etl")
        assert not etl_inc.suppressed and etl_inc.caused_by is None
        assert await g.notified("etl") == ["firing"]
        await g.tick()
        assert len(await g.attempts("etl")) == 1 and g.svc["etl"].restarts == 1


async def in_its_own_window_after_db_recovered(g) -> Incident:
    """db and etl down; etl's incident attributed to db; db healed by its restart, etl still down and
    given its own threshold window. Returns etl's incident."""
    await g.tick()
    down(g, "db", "etl")
    g.svc["etl"].after_restart = "up"
    await g.tick(2)
    [etl_inc] = await g.incidents("etl")
    assert etl_inc.caused_by == "db"
    await g.tick()  # db healed by its restart; etl still down
    assert await g.status("db") == "healthy"
    [etl_inc] = await g.incidents("etl")
    assert etl_inc.suppressed and etl_inc.held_until is not None  # its own threshold window
    return etl_inc


async def end_window(g, incident_id: int) -> None:
    """The incident's hold window (``held_until``) has passed on the wall clock."""
    async with g.guard.session() as session:
        row = await session.get(Incident, incident_id)
        row.held_until = row.opened_at
        await session.commit()


async def test_child_still_failing_after_the_root_recovers_is_handled_normally(db_url, tmp_path):
    async with graph_guard(db_url, tmp_path) as g:
        etl_inc = await in_its_own_window_after_db_recovered(g)
        assert await g.attempts("etl") == []
        await end_window(g, etl_inc.id)  # the window is a real duration: end it now
        await g.tick()
        [etl_inc] = await g.incidents("etl")
        assert not etl_inc.suppressed and etl_inc.caused_by is None
        assert await g.notified("etl") == ["firing"]
        await g.tick()
        assert len(await g.attempts("etl")) == 1 and g.svc["etl"].restarts == 1


async def test_rule_incident_on_a_child_is_released_once_its_upstreams_pass(db_url, tmp_path):
    """An incident a rule opens (``heal: true``) on a child follows the same hold: released once the
    upstreams passed a check, then healed, although the child's own checks pass all along."""
    from datetime import UTC, datetime, timedelta

    async with graph_guard(db_url, tmp_path) as g:
        h = await g.guard.headers("admin")
        r = await g.guard.client.post(
            "/api/v1/rules",
            headers=h,
            json={
                "name": "report-lag",
                "component": "report",
                "metric_name": "lag_seconds",
                "kind": "threshold",
                "params": {"operator": "gt", "value": 60},
                "heal": True,
            },
        )
        assert r.status_code == 201, r.text
        evaluator = g.guard.runtime.detection.evaluator
        await g.tick()
        r = await g.guard.client.post(
            "/api/v1/metrics/batch",
            headers=await g.guard.headers("ingest"),
            json=[
                {
                    "component": "report",
                    "metric_name": "lag_seconds",
                    "value": 600,
                    "timestamp": (datetime.now(UTC) - timedelta(seconds=5)).isoformat(),
                }
            ],
        )
        assert r.status_code == 201, r.text
        await evaluator.run_once()
        [inc] = await g.incidents("report")
        assert inc.suppressed and inc.held_until is not None
        assert await g.engine.evaluate() == []  # held: no action yet
        await g.tick()  # db and etl pass a check after it opened: released, then healed
        [inc] = await g.incidents("report")
        assert not inc.suppressed
        assert await g.notified("report") == ["firing"]
        await g.tick()
        assert [a.component for a in await g.attempts("report")] == ["report"]
        assert g.svc["report"].restarts == 1
