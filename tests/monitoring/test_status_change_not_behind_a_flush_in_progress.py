"""A result that changes a status is written in its own transaction while another flush is being
written, instead of waiting for it (its commit wakes healing); a component's results are still
written in order, and nothing buffered is lost. On SQLite (one writer) such a result is written
right after the flush in progress: a transaction beside it would only wait in the driver's busy
handler."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from sqlalchemy import func, select

from app.checks.base import CheckResult, Outcome
from app.db.models import CheckResultRecord, Incident
from app.monitoring import result_writer
from app.monitoring.result_writer import ResultWriter
from app.monitoring.tracked import Observation
from app.platform.core import Core
from tests.monitoring.conftest import add_component, mon_settings, monitored


def down(detail: str) -> CheckResult:
    return CheckResult(Outcome.DOWN, None, detail, conclusive=True)  # needs no streak: decisive at once


@contextlib.asynccontextmanager
async def flush_held_for(monkeypatch, component_id: int):
    """The next flush whose batch holds `component_id` waits, before its first statement, until released."""
    held, release = asyncio.Event(), asyncio.Event()
    write_batch = result_writer.write_batch

    async def holding(session, items, *args, **kwargs):
        if not held.is_set() and any(item.component_id == component_id for item in items):
            held.set()
            await release.wait()
        return await write_batch(session, items, *args, **kwargs)

    monkeypatch.setattr(result_writer, "write_batch", holding)
    try:
        yield held, release
    finally:
        release.set()


async def results_of(guard, component_id: int) -> list[str]:
    async with guard.session() as session:
        rows = await session.execute(
            select(CheckResultRecord.detail)
            .where(CheckResultRecord.component_id == component_id)
            .order_by(CheckResultRecord.id)
        )
        return list(rows.scalars())


async def incidents_of(guard, component_id: int) -> int:
    async with guard.session() as session:
        return (
            await session.execute(select(func.count()).where(Incident.component_id == component_id))
        ).scalar_one()


async def started(guard, scheduler) -> tuple[int, int]:
    await add_component(guard, "busy", {"kind": "http", "url": "http://127.0.0.1:9/ok"})
    await add_component(guard, "victim", {"kind": "http", "url": "http://127.0.0.1:9/ok"})
    await scheduler.refresh()
    ids = {t.name: cid for cid, t in scheduler.tracked.items()}
    for cid in ids.values():
        scheduler.writer.add(Observation(cid, "http", CheckResult.up("first")))
    await scheduler.writer.flush_all()
    scheduler.writer.start()  # the flusher, as the scheduler's loop runs it
    return ids["busy"], ids["victim"]


async def wait_for(predicate, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.02)


def needs_concurrent_writers(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite has one writer: no transaction is written beside a flush in progress")


async def test_a_status_change_is_committed_while_another_flush_is_held(db_url, tmp_path, monkeypatch):
    needs_concurrent_writers(db_url)
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        busy, victim = await started(guard, scheduler)
        writer = scheduler.writer
        async with flush_held_for(monkeypatch, busy) as (held, release):
            writer.add(Observation(busy, "http", CheckResult.up("routine")))
            routine = asyncio.ensure_future(writer.flush())
            await asyncio.wait_for(held.wait(), 20)

            writer.add(Observation(victim, "http", down("broken")))
            # Its incident is committed (and tracked) while the other flush is still held.
            await wait_for(lambda: _async(scheduler.status_of(victim) == "critical"))
            assert await incidents_of(guard, victim) == 1
            assert await results_of(guard, victim) == ["first", "broken"]
            assert not routine.done()
            assert await results_of(guard, busy) == ["first"]

            release.set()
            await routine
        assert await results_of(guard, busy) == ["first", "routine"]
        assert writer.buffered == 0
        writer.stop()


async def test_a_status_change_waits_for_the_flush_writing_its_earlier_results(db_url, tmp_path, monkeypatch):
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        busy, _ = await started(guard, scheduler)
        writer = scheduler.writer
        async with flush_held_for(monkeypatch, busy) as (held, release):
            writer.add(Observation(busy, "http", CheckResult.up("routine")))
            routine = asyncio.ensure_future(writer.flush())
            await asyncio.wait_for(held.wait(), 20)

            writer.add(Observation(busy, "http", down("broken")))
            await asyncio.sleep(0.3)  # a wrong implementation would write it now, ahead of "routine"
            assert await results_of(guard, busy) == ["first"]
            assert scheduler.status_of(busy) == "healthy"

            release.set()
            await routine
            await wait_for(lambda: _async(scheduler.status_of(busy) == "critical"))
        assert await results_of(guard, busy) == ["first", "routine", "broken"]
        assert await incidents_of(guard, busy) == 1
        writer.stop()


async def _async(value: bool) -> bool:
    return value


async def test_flush_all_returns_once_the_urgent_lane_has_written(db_url, tmp_path, monkeypatch):
    needs_concurrent_writers(db_url)
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        busy, victim = await started(guard, scheduler)
        writer = scheduler.writer
        async with (
            flush_held_for(monkeypatch, busy) as (busy_held, busy_release),
            flush_held_for(monkeypatch, victim) as (lane_held, lane_release),
        ):
            writer.add(Observation(busy, "http", CheckResult.up("routine")))
            routine = asyncio.ensure_future(writer.flush())
            await asyncio.wait_for(busy_held.wait(), 20)
            writer.add(Observation(victim, "http", down("broken")))  # to the lane, held in turn
            await asyncio.wait_for(lane_held.wait(), 20)
            busy_release.set()
            await routine
            assert writer.buffered == 0

            everything = asyncio.ensure_future(writer.flush_all())
            await asyncio.sleep(0.3)  # a flush_all that only looked at the buffer has returned by now
            assert not everything.done()
            lane_release.set()
            await everything
            assert await results_of(guard, victim) == ["first", "broken"]
        writer.stop()


async def test_on_sqlite_a_status_change_is_written_right_after_the_flush_in_progress(
    db_url, tmp_path, monkeypatch
):
    if not db_url.startswith("sqlite"):
        pytest.skip("the one-writer path")
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        busy, victim = await started(guard, scheduler)
        writer = scheduler.writer
        async with flush_held_for(monkeypatch, busy) as (held, release):
            writer.add(Observation(busy, "http", CheckResult.up("routine")))
            routine = asyncio.ensure_future(writer.flush())
            await asyncio.wait_for(held.wait(), 20)
            writer.add(Observation(victim, "http", down("broken")))
            await asyncio.sleep(0.3)
            assert writer.urgent_lane_flushes == 0 and await results_of(guard, victim) == ["first"]
            release.set()
            await routine
            await wait_for(lambda: _async(scheduler.status_of(victim) == "critical"))
        assert await results_of(guard, victim) == ["first", "broken"]
        assert await incidents_of(guard, victim) == 1
        writer.stop()


async def test_the_urgent_lane_follows_the_engine_not_the_configured_url(db_url, tmp_path, monkeypatch):
    """The writer's engine decides whether a transaction may run beside a flush in progress: a
    configured URL of the other dialect (an engine built for another URL) changes nothing."""
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        busy, victim = await started(guard, scheduler)
        scheduler.writer.stop()
        sqlite = db_url.startswith("sqlite")
        elsewhere = "postgresql+asyncpg://elsewhere/guard" if sqlite else "sqlite+aiosqlite:////elsewhere.db"
        state = scheduler.state
        core = Core(
            settings=state.settings.model_copy(update={"database_url": elsewhere}),
            metrics=state.metrics,
            sessionmaker=state.sessionmaker,
            events=state.events,
        )
        writer = ResultWriter(
            core,
            scheduler.ownership,
            scheduler.tracked,
            scheduler.probe_metrics,
            forget=lambda _cid: None,
            due_in=scheduler.due_in,
            publish_health=lambda _ids: None,
        )
        async with flush_held_for(monkeypatch, busy) as (held, release):
            writer.add(Observation(busy, "http", CheckResult.up("routine")))
            routine = asyncio.ensure_future(writer.flush())
            await asyncio.wait_for(held.wait(), 20)
            writer.add(Observation(victim, "http", down("broken")))
            if sqlite:  # one writer: right after the flush in progress, never beside it
                await asyncio.sleep(0.3)
                assert writer.urgent_lane_flushes == 0
            else:  # beside the held flush
                await wait_for(lambda: _async(writer.urgent_lane_flushes == 1))
            release.set()
            await routine
            await writer.flush_all()
        assert await results_of(guard, victim) == ["first", "broken"]


async def _three(guard, scheduler) -> tuple[int, int, int]:
    busy, victim = await started(guard, scheduler)
    scheduler.writer.stop()  # (the flusher started above is not needed: the test flushes)
    await add_component(guard, "third", {"kind": "http", "url": "http://127.0.0.1:9/ok"})
    await scheduler.refresh()
    (third,) = [cid for cid, t in scheduler.tracked.items() if t.name == "third"]
    scheduler.writer.add(Observation(third, "http", CheckResult.up("first")))
    await scheduler.writer.flush_all()
    return busy, victim, third


async def test_a_status_change_does_not_wait_for_another_components_urgent_lane(
    db_url, tmp_path, monkeypatch
):
    """Two components' decisive results while a flush is held: each in its own lane, side by side."""
    needs_concurrent_writers(db_url)
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        busy, victim, third = await _three(guard, scheduler)
        writer = scheduler.writer
        async with (
            flush_held_for(monkeypatch, busy) as (busy_held, busy_release),
            flush_held_for(monkeypatch, victim) as (lane_held, lane_release),
        ):
            writer.add(Observation(busy, "http", CheckResult.up("routine")))
            routine = asyncio.ensure_future(writer.flush())
            await asyncio.wait_for(busy_held.wait(), 20)
            writer.add(Observation(victim, "http", down("broken")))  # a lane, held
            await asyncio.wait_for(lane_held.wait(), 20)

            writer.add(Observation(third, "http", down("broken too")))  # another lane, not behind it
            await wait_for(lambda: _async(scheduler.status_of(third) == "critical"))
            assert await results_of(guard, third) == ["first", "broken too"]
            assert scheduler.status_of(victim) == "healthy"
            assert await results_of(guard, victim) == ["first"]

            lane_release.set()
            busy_release.set()
            await routine
            await writer.flush_all()
        assert await results_of(guard, victim) == ["first", "broken"]
        assert await results_of(guard, busy) == ["first", "routine"]
        assert (await incidents_of(guard, victim), await incidents_of(guard, third)) == (1, 1)
        assert writer.buffered == 0


async def test_past_the_lanes_a_status_change_takes_the_first_lane_free(db_url, tmp_path, monkeypatch):
    needs_concurrent_writers(db_url)
    monkeypatch.setattr(result_writer, "URGENT_LANES", 1)
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        busy, victim, third = await _three(guard, scheduler)
        writer = scheduler.writer
        async with (
            flush_held_for(monkeypatch, busy) as (busy_held, busy_release),
            flush_held_for(monkeypatch, victim) as (lane_held, lane_release),
        ):
            writer.add(Observation(busy, "http", CheckResult.up("routine")))
            routine = asyncio.ensure_future(writer.flush())
            await asyncio.wait_for(busy_held.wait(), 20)
            writer.add(Observation(victim, "http", down("broken")))
            await asyncio.wait_for(lane_held.wait(), 20)
            writer.add(Observation(third, "http", down("broken too")))
            await asyncio.sleep(0.3)  # the one lane is busy: it waits for it
            assert await results_of(guard, third) == ["first"]

            lane_release.set()  # the lane writes victim's, then takes third's
            await wait_for(lambda: _async(scheduler.status_of(third) == "critical"))
            assert await results_of(guard, third) == ["first", "broken too"]
            assert not routine.done()
            busy_release.set()
            await routine
            await writer.flush_all()
        assert await results_of(guard, victim) == ["first", "broken"]
        assert writer.urgent_lane_flushes == 2 and writer.buffered == 0
