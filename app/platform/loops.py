"""LoopService: the one abstraction for background work.

A loop runs ``run_once()`` every ``interval`` seconds, start-to-start (a slow iteration does not
shift the schedule; an overrun is counted and logged and the next run starts at once). Errors are
logged and never kill the loop. ``start(loops=N)`` runs N iterations and stops, for tests.

A start that fails (``on_start`` raising: the database away or slow at that moment) is retried with
a growing pause (up to ``START_RETRY_MAX_S``) until it succeeds or the loop is stopped; meanwhile the
loop counts as not started for readiness. A blip at boot must not leave a loop dead for the life of
the process while liveness stays green.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.observability.metrics import GuardMetrics

log = logging.getLogger("pipeline_guard.background")

START_RETRY_MIN_S = 0.5
START_RETRY_MAX_S = 30.0


class LoopService(ABC):
    name: str = "loop"

    def __init__(self, interval: float, *, metrics: GuardMetrics | None = None) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.interval = interval
        self.metrics = metrics
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.iterations = 0
        self.overruns = 0
        self.last_error: str | None = None
        self.last_run_at: float | None = None
        self.start_failures = 0  # failed starts since the last successful one

    @abstractmethod
    async def run_once(self) -> object:  # what a pass reports (counts, ...) is for tests and benches
        """One iteration. Raise freely: the loop logs and carries on."""

    async def prepare(self) -> None:  # noqa: B027  an optional hook: empty on purpose, not abstract
        """Called once at boot, awaited before the guard reports ready (the loop task starts after
        it). For state the API must already see when the guard is up, e.g. what the config declares."""

    async def on_start(self) -> None:  # noqa: B027  an optional hook: empty on purpose, not abstract
        """Called once before the first iteration (inside the loop's task)."""

    async def on_stop(self) -> None:  # noqa: B027  an optional hook: empty on purpose, not abstract
        """Called once after the last iteration (also after cancellation)."""

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def start_failing(self) -> bool:
        """Its start has failed and is being retried: it is not doing its work yet."""
        return self.running and self.start_failures > 0

    def start(self, loops: int | None = None) -> asyncio.Task[None]:
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._run(loops), name=f"loop:{self.name}")
        return self._task

    async def stop(self, timeout: float = 10.0) -> None:
        if self._task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except (TimeoutError, asyncio.CancelledError):
            self._task.cancel()
            # Shutting down: the cancellation is expected, and an error was logged by the loop.
            with contextlib.suppress(BaseException):
                await self._task
        self._task = None

    async def _iterate(self) -> None:
        try:
            await self.run_once()
            self.last_error = None
            self._count("ok")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a loop must survive any one failure (logged below)
            self.last_error = f"{type(exc).__name__}: {exc}"[:500]
            self._count("error")
            log.exception("%s iteration failed", self.name)

    async def _start(self) -> bool:
        """``on_start``, retried until it succeeds (True) or the loop is stopped (False)."""
        pause = START_RETRY_MIN_S
        while not self._stopping.is_set():
            try:
                await self.on_start()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database away at boot: retried, never fatal to the loop
                self.start_failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:500]
                self._count("start_error")
                log.exception(
                    "%s could not start (attempt %d); retrying in %.1fs",
                    self.name,
                    self.start_failures,
                    pause,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=pause)
                pause = min(pause * 2, START_RETRY_MAX_S)
                continue
            if self.start_failures:
                log.info("%s started after %d failed attempts", self.name, self.start_failures)
                self.start_failures = 0
                self.last_error = None
            return True
        return False

    async def _run(self, loops: int | None) -> None:
        try:
            if not await self._start():
                return
            next_start = time.monotonic()
            while not self._stopping.is_set():
                started = time.monotonic()
                self.last_run_at = time.time()
                await self._iterate()
                self.iterations += 1
                if loops is not None and self.iterations >= loops:
                    break
                next_start += self.interval
                now = time.monotonic()
                if now > next_start:
                    self.overruns += 1
                    if self.metrics is not None:
                        self.metrics.loop_overruns.labels(self.name).inc()
                    log.warning(
                        "%s overran its %.1fs interval (took %.2fs)", self.name, self.interval, now - started
                    )
                    next_start = now
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._stopping.wait(), timeout=next_start - now if next_start > now else 0
                    )
        finally:
            await self.on_stop()

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.loop_runs.labels(self.name, outcome).inc()
