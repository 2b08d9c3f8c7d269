"""`lenient_timeout`: the guard's own lateness (a blocked or starved event loop) is not counted against
what it waits for, and a deadline still ends what never answers. The loop is blocked for real
(time.sleep on it); the answers come from another thread, as a target's answer arrives in a socket
while the guard cannot run."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from app.core.deadlines import late_tolerance, lenient_timeout


def answer_from_a_thread(fut: asyncio.Future, after: float) -> threading.Timer:
    loop = fut.get_loop()
    timer = threading.Timer(after, loop.call_soon_threadsafe, (fut.set_result, "answered"))
    timer.start()
    return timer


async def test_an_answer_that_arrived_while_the_loop_was_blocked_is_read():
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    answer_from_a_thread(fut, 0.05)
    loop.call_soon(time.sleep, 0.4)  # the loop cannot run past the deadline
    async with lenient_timeout(0.1) as deadline:
        assert await fut == "answered"
    assert 0 < deadline.extended_s <= 0.1


async def test_a_plain_timeout_drops_that_answer():
    """The same sequence under asyncio.timeout: the late deadline fires in the same loop iteration as
    the answer, before the waiter can read it (what `lenient_timeout` exists for)."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    answer_from_a_thread(fut, 0.05)
    loop.call_soon(time.sleep, 0.4)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await fut


async def test_keeps_time_while_the_loop_does():
    with pytest.raises(TimeoutError):
        async with lenient_timeout(0.1) as deadline:
            await asyncio.sleep(30)
    assert deadline.extended_s == 0


async def test_what_never_answers_ends_after_at_most_twice_the_timeout():
    loop = asyncio.get_running_loop()
    loop.call_soon(time.sleep, 0.5)  # late by 0.4 s at the deadline: the deadline moves by 0.1 only
    with pytest.raises(TimeoutError):
        async with lenient_timeout(0.1) as deadline:
            await asyncio.sleep(30)
    assert deadline.extended_s == pytest.approx(0.1)


async def test_a_cancellation_from_outside_stays_a_cancellation():
    async def wait() -> None:
        async with lenient_timeout(30):
            await asyncio.sleep(30)

    task = asyncio.create_task(wait())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_result_of_a_body_that_finishes_in_time_is_kept():
    async with lenient_timeout(5) as deadline:
        await asyncio.sleep(0)
        value = 42
    assert value == 42 and deadline.extended_s == 0


def test_tolerance_is_smaller_for_short_timeouts():
    assert late_tolerance(10) == 0.05
    assert late_tolerance(0.04) == pytest.approx(0.01)
