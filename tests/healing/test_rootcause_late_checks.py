"""A held child whose upstream's checks run late (an overloaded guard) outlasts its nominal window: at
``held_until`` the upstream has not been checked since the child failed, so its state is unknown,
not healthy. The child is not released (nor notified, nor healed) on that; once the upstream's checks
run and reach their threshold, the child is attributed to it.

Real scheduler (driven by the test), recorder, root-cause loop, engine and HTTP targets on loopback
(db <- etl <- report, tests/healing/test_root_cause.py)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app.db.models import Component, ComponentState, Incident
from tests.healing.test_root_cause import down, end_window, graph_guard, in_its_own_window_after_db_recovered


async def _checks_of(g, name: str, *, before) -> None:
    """``name``'s latest check result dates from ``before`` (its checks are late since then)."""
    async with g.guard.session() as session:
        cid = (await session.execute(select(Component.id).where(Component.name == name))).scalar_one()
        state = await session.get(ComponentState, cid)
        state.last_check_at = before
        await session.commit()


async def _held_child(g) -> Incident:
    """etl down while db looks healthy: etl's incident, held (not attributed)."""
    await g.tick()
    down(g, "etl")
    await g.scheduler.run_once()
    await g.scheduler.run_once()
    [etl_inc] = await g.incidents("etl")
    return etl_inc


async def test_a_held_child_waits_for_its_upstreams_late_checks(db_url, tmp_path):
    async with graph_guard(db_url, tmp_path) as g:
        etl_inc = await _held_child(g)
        assert etl_inc.suppressed and etl_inc.caused_by is None  # held: db looks healthy
        # The nominal window has passed, and db's checks have not run since etl failed.
        await _checks_of(g, "db", before=etl_inc.opened_at - timedelta(seconds=1))
        await end_window(g, etl_inc.id)

        await g.loop.run_once()
        [etl_inc] = await g.incidents("etl")
        assert etl_inc.suppressed, "released although db was not checked since etl failed"
        assert await g.engine.evaluate() == []
        assert await g.notified("etl") == [] and await g.attempts("etl") == []

        down(g, "db")  # db's late checks run at last: it had failed
        g.svc["db"].after_restart = "up"
        await g.scheduler.run_once()
        await g.scheduler.run_once()
        await g.loop.run_once()
        [etl_inc] = await g.incidents("etl")
        assert (etl_inc.caused_by, etl_inc.suppressed) == ("db", True)
        await g.tick()
        assert len(await g.attempts("db")) == 1
        assert await g.attempts("etl") == [] and g.svc["etl"].restarts == 0
        assert await g.notified("etl") == []


async def test_a_held_child_is_released_once_its_late_upstream_passes(db_url, tmp_path):
    async with graph_guard(db_url, tmp_path) as g:
        etl_inc = await _held_child(g)
        await _checks_of(g, "db", before=etl_inc.opened_at - timedelta(seconds=1))
        await end_window(g, etl_inc.id)
        await g.loop.run_once()
        assert (await g.incidents("etl"))[0].suppressed
        await g.tick()  # db's check runs, late, and passes: etl's failure is its own
        [etl_inc] = await g.incidents("etl")
        assert not etl_inc.suppressed and etl_inc.caused_by is None
        assert await g.notified("etl") == ["firing"]
        await g.tick()
        assert len(await g.attempts("etl")) == 1 and g.svc["etl"].restarts == 1


async def test_a_child_whose_checks_are_late_after_its_root_recovered_is_not_released_on_the_clock(
    db_url, tmp_path
):
    """Attributed to db, given its own window once db recovered: etl is its own only if its own checks
    still fail after db came back. While none has run since (late), the window's end changes nothing;
    its next check, still failing, makes it its own."""
    async with graph_guard(db_url, tmp_path) as g:
        etl_inc = await in_its_own_window_after_db_recovered(g)
        async with g.guard.session() as session:
            db_state = (
                await session.execute(select(ComponentState).join(Component).where(Component.name == "db"))
            ).scalar_one()
            recovered = db_state.status_since
        await _checks_of(g, "etl", before=recovered - timedelta(seconds=1))
        await end_window(g, etl_inc.id)

        await g.loop.run_once()
        [etl_inc] = await g.incidents("etl")
        assert etl_inc.suppressed, "released although etl was not checked since db recovered"
        assert await g.engine.evaluate() == []
        assert await g.notified("etl") == [] and await g.attempts("etl") == []

        await g.tick()  # etl's late check runs: still failing with db fine, its own now
        [etl_inc] = await g.incidents("etl")
        assert not etl_inc.suppressed and etl_inc.caused_by is None
        assert await g.notified("etl") == ["firing"]
        await g.tick()
        assert len(await g.attempts("etl")) == 1 and g.svc["etl"].restarts == 1
