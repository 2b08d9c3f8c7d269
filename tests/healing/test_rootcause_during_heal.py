"""An upstream that fails while its consumer's own heal is under way (docs/LIFECYCLE.md rule 8).

etl breaks on its own (db fine): its incident is released as its own and etl is restarted. While that
restart is being verified, db dies, and etl fails again because of db. etl's checks cannot judge etl's
action while db is down, and etl's failure is db's doing: only db is acted on, etl's action gets no
verdict (no back-off, no failure in its statistics), and etl, recovering by itself once db is back, is
not restarted again.

Real scheduler (driven by the test), recorder, root-cause loop, engine and HTTP targets on loopback
(db <- etl <- report, tests/healing/test_root_cause.py)."""

from __future__ import annotations

from sqlalchemy import select

from app.db.models import Incident
from app.db.models.healing import HealingStrategyStat
from tests.healing.test_root_cause import down, graph_guard, up
from tests.healing.test_rootcause_relapse import budget, with_released_events


async def short_backoff(g, name: str) -> None:
    """A back-off shorter than a tick: a second action on ``name`` would not be held back by it."""
    svc = g.svc[name]
    recovery = {
        "strategies": [{"kind": "webhook", "url": svc.url("/restart")}],
        "grace_period": 0,
        "backoff_initial": 0.1,
        "backoff_max": 0.1,
    }
    r = await g.guard.client.patch(
        f"/api/v1/components/{name}", headers=await g.guard.headers("admin"), json={"recovery": recovery}
    )
    assert r.status_code == 200, r.text


async def test_an_upstream_failing_while_its_consumers_heal_is_verified_is_the_root(db_url, tmp_path):
    async with graph_guard(db_url, tmp_path) as g:
        with_released_events(g)
        await short_backoff(g, "etl")
        await g.tick()
        down(g, "etl")  # etl's own fault, db fine
        await g.tick(3)  # held, released as its own, restarted: now being verified
        [attempt] = await g.attempts("etl")
        assert attempt.state == "verifying", (attempt.state, attempt.detail)
        down(g, "db", "etl")  # db dies before etl's restart is verified; etl fails because of it
        g.svc["db"].after_restart = "up"
        await g.tick(3)  # db detected and restarted; etl's failures are db's doing
        assert await g.status("db") == "healthy"
        assert [a.state for a in await g.attempts("db")] == ["succeeded"]
        rows = await g.attempts("etl")
        assert len(rows) == 1, [(a.state, a.detail, a.started_at) for a in rows] + [
            (i.id, i.suppressed, i.caused_by, i.opened_at) for i in await g.incidents("etl")
        ]
        [attempt] = rows
        assert attempt.state == "cancelled", attempt.detail
        assert attempt.decision["no_verdict"] == "upstream"
        assert "its upstream db was failing" in attempt.detail
        [etl_incident] = await g.incidents("etl")
        assert etl_incident.caused_by == "db" and etl_incident.suppressed
        assert g.svc["etl"].restarts == 1  # not restarted again the moment db was back
        up(g, "etl")  # db is back: etl works again by itself
        await g.tick(2)
        assert await g.status("etl") == "healthy"
        [etl_incident] = await g.incidents("etl")
        assert etl_incident.closed_at is not None
        assert [a.state for a in await g.attempts("etl")] == ["cancelled"]
        assert g.svc["etl"].restarts == 1
        etl = await budget(g, "etl")
        assert etl.backoff_level == 0 and etl.failed_incidents == [] and not etl.breaker_open
        async with g.guard.session() as session:
            stats = (
                (
                    await session.execute(
                        select(HealingStrategyStat).where(HealingStrategyStat.component == "etl")
                    )
                )
                .scalars()
                .all()
            )
        assert all(s.failures == 0 for s in stats), [(s.successes, s.failures) for s in stats]


async def test_a_consumer_still_failing_after_its_upstream_is_back_is_healed_without_a_second_page(
    db_url, tmp_path
):
    async with graph_guard(db_url, tmp_path) as g:
        with_released_events(g)
        await short_backoff(g, "etl")
        await g.tick()
        down(g, "etl")
        await g.tick(3)  # released as its own (notified), restarted: being verified
        assert await g.notified("etl") == ["firing"]
        down(g, "db", "etl")
        g.svc["db"].after_restart = "up"
        await g.tick(3)  # db restarted; etl's incident attributed to it, its restart without a verdict
        [etl_incident] = await g.incidents("etl")
        assert etl_incident.caused_by == "db"
        async with g.guard.session() as session:  # etl's own window after db's recovery: end it now
            row = await session.get(Incident, etl_incident.id)
            row.held_until = row.opened_at
            await session.commit()
        await g.tick()  # etl still failing: its own again
        [etl_incident] = await g.incidents("etl")
        assert not etl_incident.suppressed and etl_incident.caused_by is None
        assert await g.notified("etl") == ["firing"]  # told once already: no second page
        await g.tick(2)  # restarted again, and healed
        assert [a.state for a in await g.attempts("etl")] == ["cancelled", "succeeded"]
        assert g.svc["etl"].restarts == 2
        assert await g.status("etl") == "healthy"
