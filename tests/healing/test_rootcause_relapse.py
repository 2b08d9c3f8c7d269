"""A relapse is the component's own new incident within the stick window after its heal (docs/LIFECYCLE.md,
rules 5 and 8). A child's incident attributed to an unhealthy upstream is the upstream's symptom: it
leaves the child's heal succeeded, its back-off and breaker untouched. A child's incident held for its
upstreams and then released as its own is a relapse, counted at the release.

Real scheduler (driven by the test), recorder, root-cause loop, engine and HTTP targets on loopback
(db <- etl <- report, tests/healing/test_root_cause.py)."""

from __future__ import annotations

from app.db.models.healing import HealingBudget
from app.healing.rootcause_loop import RootCauseLoop
from tests.healing.test_root_cause import down, graph_guard


def with_released_events(g) -> None:
    """The root-cause loop as the guard composes it: it publishes IncidentReleased."""
    core = g.guard.runtime.core
    g.loop = RootCauseLoop(
        core.sessionmaker, core.settings, core.metrics, wake=g.engine.wake, events=g.guard.runtime.events
    )


async def heal_etl_on_its_own(g) -> None:
    await g.tick()
    down(g, "etl")
    await g.tick(2)  # held: etl noticed before db could have
    await g.tick()  # db passed a check since: etl's incident is its own
    await g.tick(2)  # restarted, then verified
    [attempt] = await g.attempts("etl")
    assert attempt.state == "succeeded", attempt.detail
    assert await g.status("etl") == "healthy"


async def budget(g, name: str) -> HealingBudget:
    async with g.guard.session() as session:
        return await session.get(HealingBudget, name)


async def test_an_upstream_failure_inside_the_stick_window_is_no_relapse_of_the_childs_heal(db_url, tmp_path):
    async with graph_guard(db_url, tmp_path) as g:
        with_released_events(g)
        await heal_etl_on_its_own(g)
        down(g, "db", "etl")  # db dies; etl fails because of it, well inside its stick window
        g.svc["db"].after_restart = "up"
        await g.tick(2)
        etl_incidents = await g.incidents("etl")
        assert len(etl_incidents) == 2 and etl_incidents[-1].caused_by == "db", etl_incidents
        [attempt] = await g.attempts("etl")
        assert attempt.state == "succeeded", attempt.detail
        assert "relapsed" not in (attempt.detail or "")
        etl = await budget(g, "etl")
        assert etl.failed_incidents == [] and etl.backoff_level == 0 and not etl.breaker_open
        assert len(await g.attempts("db")) == 1


async def test_a_held_child_released_as_its_own_inside_the_stick_window_is_a_relapse(db_url, tmp_path):
    async with graph_guard(db_url, tmp_path) as g:
        with_released_events(g)
        await heal_etl_on_its_own(g)
        down(g, "etl")  # etl alone again, db fine: held first, then its own
        await g.tick(2)
        [attempt] = await g.attempts("etl")
        assert attempt.state == "succeeded"  # held: not counted yet
        await g.tick()  # released
        etl_incidents = await g.incidents("etl")
        assert len(etl_incidents) == 2 and not etl_incidents[-1].suppressed
        first = (await g.attempts("etl"))[0]
        assert first.state == "failed" and "relapsed" in first.detail, first.detail
        etl = await budget(g, "etl")
        assert len(etl.failed_incidents) == 1 and etl.backoff_level == 1
