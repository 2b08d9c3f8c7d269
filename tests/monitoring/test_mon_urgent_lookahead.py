"""The look-ahead that flushes a status change at once uses the thresholds the write uses."""

from __future__ import annotations

from app.checks.base import CheckResult, Outcome
from app.monitoring.tracked import Observation
from tests.monitoring.conftest import add_component, mon_settings, monitored


async def test_a_failure_the_component_reported_itself_is_flushed_at_once(db_url, tmp_path, http_target):
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        await add_component(guard, "job", {"kind": "http", "url": http_target.url("/ok")})
        await scheduler.refresh()
        cid = next(iter(scheduler.tracked))
        scheduler.writer.add(Observation(cid, "http", CheckResult.up("first")))
        await scheduler.writer.flush()
        before = scheduler.writer.urgent_flushes
        # A conclusive failure (a job's `fail` ping, a command's exit code) needs no streak: it
        # changes the status, so it is written at once, not after the flush interval.
        scheduler.writer.add(
            Observation(cid, "http", CheckResult(Outcome.DOWN, None, "exit 1", conclusive=True))
        )
        assert scheduler.writer.urgent_flushes == before + 1
