"""The scheduler's probe workers: `size` long-lived tasks serving one queue (no task per probe), and
the bounded one-off runs of `Scheduler.run_once()` (tests).

The dispatcher never queues more than there are free workers (`saturated()` / `wait_free()`), so a
saturated scheduler shows as lag rather than as a growing queue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from app.monitoring.probes import Entry

log = logging.getLogger("pipeline_guard.monitoring")


class WorkerPool:
    def __init__(self, size: int, run: Callable[[Entry, float], Awaitable[None]]):
        self.size = size
        self._run = run  # runs one entry due at the given monotonic time
        self.queue: asyncio.Queue[tuple[Entry, float]] = asyncio.Queue()
        self.busy = 0
        self._free = asyncio.Event()
        self._workers: list[asyncio.Task] = []
        self._sem = asyncio.Semaphore(size)
        self._tasks: set[asyncio.Task] = set()  # run_once() checks

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self.busy = 0
        self._workers = [
            asyncio.create_task(self._worker(), name=f"monitoring:worker-{i}") for i in range(self.size)
        ]

    def saturated(self) -> bool:
        return self.busy + self.queue.qsize() >= self.size

    async def wait_free(self) -> None:
        self._free.clear()
        await self._free.wait()

    async def stop(self) -> None:
        """In-flight checks get a moment to finish, then are cancelled (never acknowledged); queued
        ones are not started."""
        while not self.queue.empty():
            entry, _ = self.queue.get_nowait()
            entry.running = False
        deadline = time.monotonic() + 2
        while self.busy and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=2)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2)

    async def _worker(self) -> None:
        queue = self.queue
        while True:
            entry, due = await queue.get()
            self.busy += 1
            try:
                await self._run(entry, due)
            except Exception:  # Prober.execute already turns failures into results
                log.exception("check of %s failed", entry.name)
            finally:
                self.busy -= 1
                self._free.set()

    def spawn(self, entry: Entry, due: float) -> asyncio.Task:
        """Run `entry` now in its own task, at most `size` at once (`run_once()`)."""

        async def run() -> None:
            async with self._sem:
                entry.running = True
                await self._run(entry, due)

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
