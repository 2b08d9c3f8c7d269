"""Heartbeats are judged as of the instant up to which the guard has heard every ping sent to it: a
ping waiting in the socket's backlog while the guard's event loop could not run, or one still being
stored, never makes a job late. Postponed, never made up: once the guard has listened again, a job
that really missed its ping is late."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.monitoring.hearing import HOLD_MAX_S, SETTLE_S, STALL_S, TICK_S, Hearing
from tests.monitoring.conftest import add_component, mon_settings, monitored, status_of

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _ticking(clock: FakeClock) -> Hearing:
    hearing = Hearing(clock)
    hearing._task = object()  # type: ignore[assignment]  # "the watcher runs" without a loop
    return hearing


def test_a_loop_that_keeps_time_judges_at_now():
    clock = FakeClock()
    hearing = _ticking(clock)
    for _ in range(50):
        clock.t += TICK_S
        hearing.tick()
    assert hearing.heard_until(NOW) == NOW


def test_a_stall_moves_the_instant_back_to_its_start_until_the_backlog_had_time():
    clock = FakeClock()
    hearing = _ticking(clock)
    clock.t += TICK_S
    hearing.tick()
    stalled_at = clock.t
    clock.t += 5.0  # no wake for 5 s
    # Before the watcher ran again (the check is the first thing the loop does): as of the stall's start.
    assert hearing.heard_until(NOW) == NOW - timedelta(seconds=5.0)
    hearing.tick()
    assert hearing.heard_until(NOW) == NOW - timedelta(seconds=clock.t - stalled_at)
    for _ in range(int(SETTLE_S / TICK_S) + 1):
        clock.t += TICK_S
        hearing.tick()
    assert hearing.heard_until(NOW) == NOW


def test_stalls_closer_than_the_settling_time_count_from_the_first():
    clock = FakeClock()
    hearing = _ticking(clock)
    first = clock.t
    clock.t += 3.0
    hearing.tick()
    clock.t += SETTLE_S / 2
    hearing.tick()
    clock.t += 3.0
    hearing.tick()
    assert hearing.heard_until(NOW) == NOW - timedelta(seconds=clock.t - first)


def test_a_ping_in_flight_holds_its_component_at_its_arrival():
    clock = FakeClock()
    hearing = _ticking(clock)
    with hearing.receiving() as first:
        first.hold("etl")
        clock.t += 0.3
        hearing.tick()
        with hearing.receiving() as second:
            clock.t += 0.2
            second.hold("etl")  # held once its token named the component; from the request's arrival
            hearing.tick()
            assert hearing.heard_until(NOW, "etl") == NOW - timedelta(seconds=0.5)
            assert hearing.heard_until(NOW, "other") == NOW  # another component is not held back
        assert hearing.heard_until(NOW, "etl") == NOW - timedelta(seconds=0.5)
    assert hearing.heard_until(NOW, "etl") == NOW


def test_a_request_that_never_named_a_component_holds_nothing_back():
    clock = FakeClock()
    hearing = _ticking(clock)
    with hearing.receiving():  # a wrong token, or a body trickling in before the token is read
        for _ in range(300):
            clock.t += TICK_S
            hearing.tick()
        assert hearing.heard_until(NOW, "etl") == NOW


def test_a_ping_that_takes_too_long_to_store_stops_holding_back():
    clock = FakeClock()
    hearing = _ticking(clock)
    with hearing.receiving() as receipt:
        receipt.hold("etl")
        for _ in range(int(HOLD_MAX_S / TICK_S) + 1):
            clock.t += TICK_S
            hearing.tick()
        assert hearing.heard_until(NOW, "etl") == NOW


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 8.0), st.booleans()), max_size=40))
def test_never_later_than_now_and_now_once_settled(steps):
    clock = FakeClock()
    hearing = _ticking(clock)
    for gap, in_flight in steps:
        clock.t += gap
        if in_flight:
            with hearing.receiving() as receipt:
                receipt.hold("etl")
                assert hearing.heard_until(NOW, "etl") <= NOW
        hearing.tick()
        assert hearing.heard_until(NOW, "etl") <= NOW
    for _ in range(int((SETTLE_S + STALL_S) / TICK_S) + 2):
        clock.t += TICK_S
        hearing.tick()
    assert hearing.heard_until(NOW, "etl") == NOW


async def test_the_watcher_sees_a_blocked_loop():
    hearing = Hearing()
    hearing.start()
    try:
        await asyncio.sleep(0.25)
        time.sleep(1.2)  # the loop cannot run
        assert hearing.heard_until(NOW) <= NOW - timedelta(seconds=1.0)
        await asyncio.sleep(0.25)  # the watcher ran: the stall is recorded
        assert hearing.heard_until(NOW) <= NOW - timedelta(seconds=1.0)
    finally:
        await hearing.stop()


HB = {"kind": "heartbeat", "period_s": 1, "grace_s": 0.5}


async def _token(guard, name):
    r = await guard.client.post(f"/api/v1/components/{name}/ping-token", headers=await guard.headers("admin"))
    assert r.status_code == 200, r.text
    return r.json()["token"]


async def test_after_a_stall_a_heartbeat_is_not_late_until_the_guard_listened_again(db_url, tmp_path):
    async with monitored(mon_settings(db_url, tmp_path, {"failure_threshold": 1})) as (guard, scheduler):
        await add_component(guard, "nightly", HB)
        token = await _token(guard, "nightly")
        assert (await guard.client.get(f"/ping/{token}")).status_code == 200
        await scheduler.run_once()
        assert (await status_of(guard, "nightly"))["status"] == "healthy"
        await asyncio.sleep(0.3)  # the watcher ticks
        # The guard stops for longer than period + grace; pings the job sent meanwhile would be in
        # the backlog. The first check after it judges as of the stall's start: not late.
        time.sleep(2.0)
        await scheduler.run_once()
        state = await status_of(guard, "nightly")
        assert state["status"] == "healthy", state
        # Once the guard has listened for the settling time since (longer if the machine stalls it
        # again), and no ping came: late.
        for _ in range(60):
            await asyncio.sleep(SETTLE_S / 4)
            await scheduler.run_once()
            state = await status_of(guard, "nightly")
            if state["status"] != "healthy":
                break
        assert state["status"] != "healthy", state
        assert "late" in state["last_detail"], state


async def test_a_ping_holds_its_component_until_it_is_committed(db_url, tmp_path):
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        nightly, other = "nightly", "other"
        await add_component(guard, nightly, HB)
        await add_component(guard, other, HB)
        token = await _token(guard, "nightly")
        # Without its watcher (no stall is inferred: a loaded machine stalls the test's loop too), so
        # what moves the instant back is the pings' hold alone.
        hearing = scheduler.prober.hearing = Hearing()
        seen: list[tuple[bool, bool]] = []

        def after_commit(_session) -> None:
            now = datetime.now(UTC)
            seen.append((hearing.heard_until(now, nightly) < now, hearing.heard_until(now, other) < now))

        event.listen(Session, "after_commit", after_commit)
        try:
            assert (await guard.client.get(f"/ping/{token}")).status_code == 200
            r = await guard.client.post(
                "/api/v1/components/nightly/heartbeat", headers={"X-Ping-Token": token}
            )
            assert r.status_code == 200, r.text
            assert (await guard.client.get("/ping/not-a-token")).status_code == 404
        finally:
            event.remove(Session, "after_commit", after_commit)
        # Both pings' commits happened while their component was held, and only theirs.
        assert seen.count((True, False)) >= 2, seen
        assert all(not held_other for _, held_other in seen), seen
        now = datetime.now(UTC)
        assert hearing.heard_until(now, nightly) == now  # and they ended
