"""Up to when this process has heard everything pushed to it (pings, metric points), so that nothing
is judged missing that the guard itself has not read yet: a heartbeat late, an ``absent`` rule's
series silent, a ``for`` threshold held with no point since.

A job's ping reaches the guard's socket on time; the guard stores it once its event loop gets to it.
While the loop cannot run (the process stopped, starved of CPU, a long collection), pings wait in the
socket's backlog; the first thing the loop does when it runs again may be a heartbeat check, which
would read the stored state without them and call the job late. Likewise a ping being stored (its
request in the route, its transaction not committed, say behind a slow database) is not in the state
a check reads meanwhile.

`Hearing.heard_until(now, component)` is the instant those judge at instead of ``now``:

- ``now`` itself while the loop keeps time and no ping is being stored;
- the start of a stall (a wake of the watcher late by more than ``STALL_S``) that is still going on
  or ended less than ``SETTLE_S`` ago: pings sent during it may still be in the backlog. Stalls
  closer together than ``SETTLE_S`` count as one, from the first one's start;
- for one component, the moment the oldest request still storing a ping or points of it entered its
  route (`receiving`, held once the ping's token named the component, or once a metric batch is
  decoded: a caller without a valid token or a whole body holds nothing back, and nobody for longer
  than ``HOLD_MAX_S``).

One per process, shared by the scheduler's heartbeat checks and the rule evaluator; its watcher runs
while either does (`start`/`stop` are counted).

Only ever earlier than ``now``, and only after a stall or while a ping is in flight: a verdict of
"late" is postponed, never made up. A stall is known from the watcher's own lateness, measured on
the monotonic clock; the wall clock is only shifted back by the same amount.

What it cannot see: pings sent to another replica (each replica hears its own socket only).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

TICK_S = 0.1  # how often the watcher wakes
STALL_S = 0.5  # a wake later than this is a stall: the loop could not read its sockets meanwhile
SETTLE_S = 2.0  # after a stall, time for the backlog's pings to reach their route
KEEP = 64  # stalls remembered (only the recent ones matter)
HOLD_MAX_S = 60.0  # a ping still being stored after this long holds nothing back any more


class Hearing:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last_tick = clock()
        self._stalls: deque[tuple[float, float]] = deque(maxlen=KEEP)  # (start, end), monotonic
        self._held: dict[str, dict[int, float]] = {}  # component -> {receipt: its request's arrival}
        self._ids = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self._users = 0

    # -- the watcher -----------------------------------------------------------------------------------
    def start(self) -> None:
        """One more user of the watcher (started by the first)."""
        self._users += 1
        if self._task is None:
            self._last_tick = self._clock()
            self._task = asyncio.get_running_loop().create_task(self._watch(), name="hearing")

    async def stop(self) -> None:
        """One user less (stopped with the last)."""
        self._users = max(0, self._users - 1)
        task = self._task
        if self._users or task is None:
            return
        self._task = None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self.tick()

    def tick(self) -> None:
        """One wake of the watcher: a wake more than ``STALL_S`` late records a stall since the last."""
        now = self._clock()
        if now - self._last_tick > TICK_S + STALL_S:
            self._stalls.append((self._last_tick, now))
        self._last_tick = now

    # -- pings being stored --------------------------------------------------------------------------
    @contextlib.contextmanager
    def receiving(self) -> Iterator[Receipt]:
        """Around a request that stores a ping or metric points, its commit included; the route holds
        the receipt for the components it stores for once it knows them. Until the request ends,
        those components are judged as of the request's arrival."""
        receipt = Receipt(self, next(self._ids), self._clock())
        try:
            yield receipt
        finally:
            receipt.release()

    # -- the instant to judge at ---------------------------------------------------------------------
    def heard_until(self, now: datetime, component: str | None = None) -> datetime:
        """``now`` moved back to the instant up to which everything sent to this process (for
        ``component``: everything of that component) is stored."""
        mono = self._clock()
        cut = mono
        if self._task is not None and mono - self._last_tick > TICK_S + STALL_S:
            cut = self._last_tick  # a stall right now: the watcher has not run since
        for start, end in reversed(self._stalls):
            if end <= cut - SETTLE_S:
                break
            cut = min(cut, start)
        for arrived in self._held.get(component, {}).values() if component is not None else ():
            if mono - arrived < HOLD_MAX_S:
                cut = min(cut, arrived)
        return now if cut >= mono else now - timedelta(seconds=mono - cut)


class Receipt:
    """One request in flight that stores pings or points (`Hearing.receiving`)."""

    def __init__(self, hearing: Hearing, key: int, arrived: float) -> None:
        self._hearing, self.key, self.arrived = hearing, key, arrived
        self._components: tuple[str, ...] = ()

    def hold(self, *components: str) -> None:
        """The request stores for ``components``: they wait for it until it ends."""
        self.release()
        self._components = components
        held = self._hearing._held
        for component in components:
            held.setdefault(component, {})[self.key] = self.arrived

    def release(self) -> None:
        components, self._components = self._components, ()
        held = self._hearing._held
        for component in components:
            receipts = held.get(component)
            if receipts is not None:
                receipts.pop(self.key, None)
                if not receipts:
                    del held[component]
