"""A held child whose upstream fails and is healed between two root-cause passes (a restart takes well
under a second, the loop runs every second) is still the upstream's symptom: attributed to it, given
its own window to recover, not released and restarted because the upstream "passed a check since".

Real scheduler (driven by the test), recorder, root-cause loop, engine and HTTP targets on loopback
(db <- etl <- report, tests/healing/test_root_cause.py)."""

from __future__ import annotations

from tests.healing.conftest import wait_until
from tests.healing.test_root_cause import down, graph_guard, up


async def test_an_upstream_healed_between_two_passes_still_owns_its_held_childs_failure(db_url, tmp_path):
    async with graph_guard(db_url, tmp_path) as g:
        await g.tick()
        down(g, "etl")  # etl notices first ...
        await g.tick(2)
        [etl_incident] = await g.incidents("etl")
        assert etl_incident.suppressed and etl_incident.caused_by is None  # held
        down(g, "db")  # ... then db fails, and is restarted and verified before the next pass
        g.svc["db"].after_restart = "up"
        await g.scheduler.run_once()
        await g.scheduler.run_once()
        assert await g.status("db") == "critical"
        [attempt_id] = await g.engine.evaluate()
        await wait_until(lambda: g._acted(attempt_id), timeout=30)
        await g.scheduler.run_once()
        assert await g.status("db") == "healthy"

        await g.loop.run_once()  # the first pass since: db is healthy and passed a check since
        [etl_incident] = await g.incidents("etl")
        assert etl_incident.suppressed, "released as etl's own although db failed meanwhile"
        assert etl_incident.caused_by == "db" and etl_incident.held_until is not None
        assert await g.engine.evaluate() == []
        assert await g.attempts("etl") == [] and g.svc["etl"].restarts == 0
        assert await g.notified("etl") == []

        up(g, "etl")  # db is back: etl recovers within its window, by itself
        await g.tick(3)
        assert await g.status("etl") == "healthy"
        assert all(i.closed_at is not None for i in await g.incidents("etl"))
        assert await g.attempts("etl") == [] and await g.notified("etl") == []
