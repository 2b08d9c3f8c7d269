"""While an action runs its component's failures are held (docs/LIFECYCLE.md, rule 1). The hold ends
with the action whenever there is nothing left for it to cover: here, a restart that waits for its
service and sees it healthy before it returns (the incident closes while the action runs, the attempt
is succeeded when it ends). A failure after that is a new incident within one threshold, not a blind
spot until the action's timeout. Real scheduler, recorder, engine and an HTTP target on loopback."""

from __future__ import annotations

import asyncio

from tests.healing.conftest import wait_until
from tests.healing.test_incident_lifecycle import lifecycle_guard


async def test_a_heal_seen_while_the_action_ran_leaves_no_blind_spot_after_it(db_url, tmp_path):
    async with lifecycle_guard(db_url, tmp_path) as life:
        # The webhook's timeout (+5 s) bounds the hold: far longer than this test's checks take.
        component = await life.add(
            "svc",
            {
                "strategies": [{"kind": "webhook", "url": life.svc.url("/restart"), "timeout": 120}],
                "grace_period": 0,
            },
        )
        life.svc.mode = "down"
        await life.checks(2)
        assert await life.status(component["id"]) == "critical"
        life.svc.hold = asyncio.Event()
        [attempt_id] = await life.engine.evaluate()
        await wait_until(lambda: life.svc.calls == 1, timeout=30)  # the restart is under way ...
        life.svc.mode = "up"
        await life.checks(1)  # ... and its service already answers: the incident closes
        assert await life.status(component["id"]) == "healthy"
        life.svc.hold.set()
        await wait_until(lambda: life._acted(attempt_id), timeout=30)
        assert (await life.attempt(attempt_id)).state == "succeeded"

        life.svc.mode = "down"  # it falls over again once the action is over
        await life.checks(2)  # failure_threshold
        assert await life.status(component["id"]) == "critical", [
            t.reason for t in await life.transitions(component["id"])
        ]
        assert len(await life.incidents(component["id"])) == 2
