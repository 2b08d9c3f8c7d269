"""A component healed while its action still runs (a restart that waits for its service) and falling
over again: while the action runs its failures are held (no second action starts on the component),
and once the action has ended a new incident within the stick window is a relapse of that heal (a
failed heal with back-off, not a success)."""

from __future__ import annotations

import asyncio

from tests.healing.conftest import wait_until
from tests.healing.test_incident_lifecycle import lifecycle_guard


async def test_a_relapse_after_a_heal_seen_while_the_action_ran(db_url, tmp_path):
    async with lifecycle_guard(db_url, tmp_path) as life:
        component = await life.add(
            "svc",
            {
                "strategies": [{"kind": "webhook", "url": life.svc.url("/restart"), "timeout": 120}],
                "grace_period": 0,
                "verify_timeout": 300,
                "max_attempts": 3,
                "backoff_initial": "1h",
            },
        )
        life.svc.mode = "down"
        await life.checks(2)
        life.svc.hold = asyncio.Event()
        [first] = await life.engine.evaluate()
        await wait_until(lambda: life.svc.calls == 1, timeout=30)  # the restart is under way ...
        life.svc.mode = "up"
        await life.checks(1)  # ... its service answers: the incident closes
        assert await life.status(component["id"]) == "healthy"
        life.svc.mode = "down"  # it falls over while the action still runs
        await life.checks(2)  # held: the action's own effect, as long as it runs
        assert await life.engine.evaluate() == [] and life.svc.calls == 1
        life.svc.after_restart = "down"  # the action ends without fixing what broke since
        life.svc.hold.set()
        await wait_until(lambda: life._acted(first), timeout=30)
        await life.checks(2)  # failure_threshold once the action is over
        assert await life.status(component["id"]) == "critical"
        assert len(await life.incidents(component["id"])) == 2
        row = await life.attempt(first)
        assert row.state == "failed" and "relapsed" in (row.detail or ""), (row.state, row.detail)
        assert await life.engine.evaluate() == []  # the relapse's back-off (1 h) holds the next action
        assert life.svc.calls == 1
