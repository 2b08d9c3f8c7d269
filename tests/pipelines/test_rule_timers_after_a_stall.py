"""Rule timers (``absent`` rules, ``for`` thresholds) judge as of the instant up to which the guard has
stored the points sent to it: a stall of its event loop (points waiting in its socket meanwhile) is
not a silence of the series, and a batch being stored holds its components back until its commit.
Postponed, never made up: once the guard has listened again, a series that really went silent fires."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from sqlalchemy import event
from sqlalchemy.orm import Session

from app.monitoring.hearing import Hearing
from tests.conftest import running_guard
from tests.pipelines.test_absent_rules import active, point, send, tick_until


async def absent_rule(guard, for_s: str) -> None:
    r = await guard.client.post(
        "/api/v1/rules",
        headers=await guard.headers("admin"),
        json={
            "name": "etl-fresh",
            "component": "etl",
            "metric_name": "rows_loaded",
            "kind": "absent",
            "params": {"for": for_s},
            "severity": "critical",
        },
    )
    assert r.status_code == 201, r.text


async def test_a_stall_of_the_guard_is_no_silence_of_the_series(settings):
    async with running_guard(settings, build_services=lambda rt: []) as guard:
        await absent_rule(guard, "1s")
        evaluator = guard.runtime.detection.evaluator
        evaluator.hearing.start()
        try:
            await send(guard, [point()])
            await evaluator.run_once()
            assert await active(guard) == []
            await asyncio.sleep(0.3)  # the watcher ticks
            await send(guard, [point()])  # stored; the evaluator reads it after the stall
            time.sleep(2.0)  # the guard cannot run: points pushed meanwhile would wait in its socket
            await evaluator.run_once()  # the point's arrival, and the timer
            assert await active(guard) == []

            async def fired() -> bool:
                return bool(await active(guard))

            await tick_until(evaluator, fired)  # listened again, and no point came: silent
        finally:
            await evaluator.hearing.stop()


async def test_a_batch_holds_its_components_until_it_is_committed(settings):
    async with running_guard(settings, build_services=lambda rt: []) as guard:
        # One hearing for the route and the evaluator, without its watcher (a loaded machine stalls
        # the test's loop too): what moves the instant back here is the batch's hold alone.
        hearing = Hearing()
        guard.runtime.monitoring.scheduler.prober.hearing = hearing
        guard.runtime.detection.evaluator.hearing = hearing
        seen: list[tuple[bool, bool]] = []

        def after_commit(_session) -> None:
            now = datetime.now(UTC)
            seen.append((hearing.heard_until(now, "etl") < now, hearing.heard_until(now, "other") < now))

        event.listen(Session, "after_commit", after_commit)
        try:
            await send(guard, [point()])
            r = await guard.client.post(
                "/api/v1/metrics", json=point(), headers=await guard.headers("ingest")
            )
            assert r.status_code == 201, r.text
        finally:
            event.remove(Session, "after_commit", after_commit)
        assert seen.count((True, False)) >= 2, seen  # both requests' commits, with etl held, and only etl
        assert all(not other for _, other in seen), seen
        now = datetime.now(UTC)
        assert hearing.heard_until(now, "etl") == now
