"""A timeout that does not count the guard's own lateness against the thing it waits for.

A probe's timeout is meant for the target: "it did not answer within 1 s". When the guard itself
cannot run (its event loop busy with a long batch of work, the process starved of CPU on an
overloaded machine, stopped for a while), a plain `asyncio.timeout` still fires as soon as the loop
gets back, in the same loop iteration as the answer that arrived meanwhile: the answer is never
read, and a healthy target is reported as "timeout after 1s". Two of those in a row open a false
incident, and a false incident is healed.

`lenient_timeout(seconds)` behaves as `asyncio.timeout(seconds)` while the loop keeps time. When
its deadline's timer runs late (by more than `late_tolerance(seconds)`: the loop could not run), the
deadline moves on by as much as it was late, so that what already arrived is read first; in all it
moves by at most `seconds` (a probe of a target that really hangs ends by twice its timeout, only
when the guard was late). On a guard that keeps time nothing changes: same single timer, same
instant, same `TimeoutError`.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

LATE_TOLERANCE_S = 0.05  # a timer this late says the loop could not run (an idle loop is ~1 ms late)


def late_tolerance(seconds: float) -> float:
    """How late a deadline's timer may run before the deadline moves: 50 ms, less for short timeouts
    (a quarter of the timeout)."""
    return min(LATE_TOLERANCE_S, 0.25 * seconds)


class lenient_timeout:  # noqa: N801 - used like asyncio.timeout
    """``async with lenient_timeout(seconds):`` (see the module's docstring). Raises TimeoutError."""

    __slots__ = ("_seconds", "_loop", "_inner", "_deadline", "_extra", "_handle", "_tolerance", "extended_s")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._extra = seconds  # what the deadline may still move, in all
        self._tolerance = late_tolerance(seconds)
        self.extended_s = 0.0  # how far the deadline moved because the guard ran late
        self._handle: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> lenient_timeout:
        self._loop = loop = asyncio.get_running_loop()
        self._inner = asyncio.timeout(None)
        await self._inner.__aenter__()
        self._deadline = loop.time() + self._seconds
        self._handle = loop.call_at(self._deadline, self._due)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        await self._inner.__aexit__(exc_type, exc, tb)  # turns its own cancellation into TimeoutError

    def _due(self) -> None:
        now = self._loop.time()
        late = now - self._deadline
        if late > self._tolerance and self._extra > 0:
            step = min(late, self._extra)
            self._extra -= step
            self.extended_s += step
            self._deadline = now + step
            self._handle = self._loop.call_at(self._deadline, self._due)
            return
        self._handle = None
        self._inner.reschedule(now)  # expires: the task is cancelled, TimeoutError on the way out
