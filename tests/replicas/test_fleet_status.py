"""/api/v1/status with several replicas on Postgres: the counts and the overall health cover the
whole fleet whichever replica answers; a replica holding every lease counts from its health map, and
its scheduler follows every lease that moves without walking the fleet while none does."""

from __future__ import annotations

from sqlalchemy import update

from app.db.models import Component, ComponentState
from tests.replicas.conftest import add_components, replicas, tick


async def set_status(guard, statuses: dict[int, str], critical: int | None = None) -> None:
    async with guard.session() as session:
        for cid, status in statuses.items():
            await session.execute(
                update(ComponentState).where(ComponentState.component_id == cid).values(status=status)
            )
        if critical is not None:
            await session.execute(
                update(Component)
                .where(Component.id == critical)
                .values(critical=True, version=Component.version + 1)
            )
        await session.commit()


async def status(guard) -> dict:
    r = await guard.client.get("/api/v1/status", headers=await guard.headers("viewer"))
    assert r.status_code == 200, r.text
    return r.json()


async def test_status_covers_the_whole_fleet_whichever_replica_answers(pg_url, tmp_path, monkeypatch):
    async with replicas(pg_url, tmp_path, [None, None]) as (a, b):
        ids = await add_components(a, 12)
        scheduler = a.runtime.monitoring.scheduler
        await a.headers("viewer")  # (argon2 is slow: the short test leases are renewed after it)
        await tick([a])
        await scheduler.refresh()  # creates the state rows
        await set_status(a, dict.fromkeys(ids, "healthy"))
        scheduler.forget(set(ids))  # reload them with their stored statuses
        await scheduler.refresh()
        # Alone, A holds a current lease on every component: its health map is the fleet.
        assert set(scheduler.tracked) == set(ids) and scheduler.holds_whole_fleet
        body = await status(a)
        assert body["counts_by_status"] == {"healthy": 12} and body["overall_health"] == "healthy"

        await scheduler.refresh()  # settles: the diff that loaded them is checked once more
        asked: list[int] = []
        real_owned = a.manager.owned

        async def counting_owned(component_ids: set[int]) -> set[int]:
            asked.append(len(component_ids))
            return await real_owned(component_ids)

        monkeypatch.setattr(a.manager, "owned", counting_owned)
        await tick([a])
        await scheduler.refresh()
        assert asked == []  # the leases were renewed, none moved: no diff

        # B joins: A hands over B's share; A's scheduler follows at its next refresh.
        await tick([b, a, b])
        await scheduler.refresh()
        assert asked  # the leases moved: the refresh diffed
        mine, theirs = set(a.manager.epochs), set(b.manager.epochs)
        assert mine and theirs and mine | theirs == set(ids)
        assert set(scheduler.tracked) == mine and not scheduler.holds_whole_fleet

        # Components B holds fail, one of them critical: A's map does not hold them, the database does.
        down, slow = sorted(theirs)[:2]
        await set_status(a, {down: "critical", slow: "degraded"}, critical=down)
        body = await status(a)
        assert body["counts_by_status"] == {"healthy": 10, "critical": 1, "degraded": 1}
        assert body["total"] == 12 and body["overall_health"] == "critical"

        # B leaves: A takes every lease again and counts from memory once its scheduler has them.
        await b.manager.release_all()
        await tick([a], rounds=1)
        await scheduler.refresh()
        assert set(scheduler.tracked) == set(ids) and scheduler.holds_whole_fleet
        body = await status(a)
        assert body["counts_by_status"] == {"healthy": 10, "critical": 1, "degraded": 1}
        assert body["overall_health"] == "critical"
