"""When each check runs next, and the dispatcher that hands due checks to the workers.

Separate from the scheduler's refresh (which decides WHAT is checked): this module only knows
entries, their due times and the worker pool. Each entry runs start-to-start every `interval`
plus up to `jitter * interval`; an entry far behind (paused, overloaded) is moved to now rather than
run in a burst. Heap items carry the entry's generation: rescheduling or forgetting an entry bumps
it, so its older items are skipped when popped (no search-and-remove in the heap).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.monitoring.probes import Entry
    from app.monitoring.result_writer import ResultWriter
    from app.monitoring.workers import WorkerPool

log = logging.getLogger("pipeline_guard.monitoring")

DISPATCH_TICK_S = 0.005  # the dispatcher sleeps at least this long between batches of due entries


class Timetable:
    def __init__(self, jitter: Callable[[], float]):
        self._jitter = jitter  # read per use: a reload of the setting applies to the next due time
        self.heap: list[tuple[float, int, int]] = []
        self.wake = asyncio.Event()
        self.overruns = 0

    def schedule(self, entry: Entry, base_due: float) -> None:
        """First run (or a new interval): at `base_due` plus jitter."""
        entry.generation += 1
        entry.base_due = base_due
        entry.due = base_due + random.uniform(0, self._jitter() * entry.interval)
        heapq.heappush(self.heap, (entry.due, entry.component_id, entry.generation))
        self.wake.set()

    def schedule_exact(self, entry: Entry, due: float) -> None:
        entry.generation += 1
        entry.base_due = entry.due = due
        heapq.heappush(self.heap, (entry.due, entry.component_id, entry.generation))
        self.wake.set()

    def make_due_now(self, entry: Entry) -> None:
        entry.generation += 1
        entry.due = time.monotonic()
        heapq.heappush(self.heap, (entry.due, entry.component_id, entry.generation))
        self.wake.set()

    def _next(self, entry: Entry, now: float) -> None:
        base = entry.base_due + entry.interval
        if base < now - entry.interval:  # far behind (paused, overloaded): skip, don't burst
            base = now
        entry.base_due = base
        entry.due = base + random.uniform(0, self._jitter() * entry.interval)
        heapq.heappush(self.heap, (entry.due, entry.component_id, entry.generation))

    async def dispatch(
        self, entries: dict[int, Entry], pool: WorkerPool, writer: ResultWriter, closing: Callable[[], bool]
    ) -> None:
        """Moves due entries to the workers' queue, never more than there are free workers (so a
        saturated scheduler shows as lag, and an entry far behind is skipped rather than burst)."""
        heap = self.heap
        queue = pool.queue
        loop = asyncio.get_running_loop()
        while not closing():
            now = time.monotonic()
            while heap and heap[0][0] <= now:
                if writer.backlogged:
                    await writer.wait_room()  # back-pressure: the database is behind (the lag shows it)
                    now = time.monotonic()
                    continue
                if pool.saturated():
                    await pool.wait_free()  # the lag shows it
                    now = time.monotonic()
                    continue
                due, cid, generation = heapq.heappop(heap)
                entry = entries.get(cid)
                if entry is None or entry.generation != generation:
                    continue
                if entry.running:
                    self.overruns += 1
                    if self.overruns % 100 == 1:
                        log.warning(
                            "check of %s still running when due again (%d overruns so far)",
                            entry.name,
                            self.overruns,
                        )
                    self._next(entry, now)
                    continue
                entry.running = True
                queue.put_nowait((entry, due))
                self._next(entry, now)
            self.wake.clear()
            delay = (heap[0][0] - time.monotonic()) if heap else 1.0
            if delay > 0:
                # A plain timer that sets the wake event (no wait_for task per wake-up), and at
                # least DISPATCH_TICK_S between wake-ups so due entries are dispatched in small
                # batches rather than one loop wake-up per probe.
                timer = loop.call_later(min(max(delay, DISPATCH_TICK_S), 1.0), self.wake.set)
                await self.wake.wait()
                timer.cancel()
