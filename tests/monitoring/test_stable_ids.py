"""Stable ids: a deleted component's (or incident's) id is never handed to a new one, on both dialects,
and nothing of the old one — scheduler state, healing's view of its incidents — carries over."""

from __future__ import annotations

from sqlalchemy import select

from app.db.models import Component
from app.db.models.healing import HealingAttempt, HealingIncident
from app.db.models.monitoring import Incident
from tests.healing.conftest import count_lines, touch_argv
from tests.monitoring.conftest import add_component, mon_settings, monitored, status_of


async def _delete(guard, name: str) -> None:
    response = await guard.client.delete(f"/api/v1/components/{name}", headers=await guard.headers("admin"))
    assert response.status_code == 204, response.text


async def _incident_ids(guard, component_id: int) -> list[int]:
    async with guard.session() as session:
        return list(
            (
                await session.execute(
                    select(Incident.id).where(Incident.component_id == component_id).order_by(Incident.id)
                )
            ).scalars()
        )


async def test_new_component_after_a_delete_gets_new_ids_and_is_healed(db_url, tmp_path, http_target):
    marker = tmp_path / "ran"
    failing = {"kind": "http", "url": http_target.url("/500"), "failure_threshold": 1}
    recovery = {"strategies": [{"kind": "restart", "argv": touch_argv(marker)}]}
    settings = mon_settings(db_url, tmp_path, healing={"command_actions_enabled": True})
    async with monitored(settings) as (guard, scheduler):
        engine = guard.runtime.healing.engine
        old = await add_component(guard, "old", failing, recovery=recovery, critical=True)
        await scheduler.run_once()
        [old_incident] = await _incident_ids(guard, old["id"])
        await _delete(guard, "old")  # before healing ever acted on it

        new = await add_component(guard, "new", failing, recovery=recovery, critical=True)
        assert new["id"] > old["id"]
        await scheduler.run_once()
        assert (await status_of(guard, "new"))["status"] == "critical"
        [new_incident] = await _incident_ids(guard, new["id"])
        assert new_incident > old_incident
        await engine.evaluate()
        await engine.drain(timeout=30)
        async with guard.session() as session:
            attempts = (await session.execute(select(HealingAttempt))).scalars().all()
            incidents = (await session.execute(select(HealingIncident))).scalars().all()
        assert [(a.component, a.incident_id) for a in attempts] == [("new", new_incident)]
        assert [i.component for i in incidents] == ["new"]  # the deleted one's went with it
        assert count_lines(marker) == 1


async def test_scheduler_tells_a_recreated_component_from_the_old_one_under_the_same_id(
    db_url, tmp_path, http_target
):
    """Even where an id comes back (a restore, a manual insert), the creation time tells the scheduler
    it watches another component: it starts from scratch instead of inheriting the old state."""
    settings = mon_settings(db_url, tmp_path)
    async with monitored(settings) as (guard, scheduler):
        old = await add_component(
            guard, "old", {"kind": "http", "url": http_target.url("/500"), "failure_threshold": 1}
        )
        await scheduler.run_once()
        assert scheduler.status_of(old["id"]) == "critical"
        await _delete(guard, "old")
        async with guard.session() as session:
            session.add(
                Component(
                    id=old["id"],
                    name="again",
                    check={"kind": "http", "url": http_target.url("/ok")},
                    labels={},
                    version=old["version"],
                )
            )
        await scheduler.refresh()
        assert scheduler.entries[old["id"]].name == "again"
        assert scheduler.status_of(old["id"]) != "critical"
        await scheduler.run_once()
        assert (await status_of(guard, "again"))["status"] == "healthy"
