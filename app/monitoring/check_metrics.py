"""Numbers a check reports (``CheckResult.metrics``) become metric points of its component.

The scheduler hands every result with numbers to ``CheckMetrics.add``; a flusher task writes the
buffered points every second through the metrics service (same store, rollups, cache invalidation
and rule hand-over as points pushed over the API), in its own transaction: a failing metrics write
never holds up the check results, and a failed write is retried on the next tick. The buffer is
bounded: past ``MAX_BUFFER`` the oldest points are dropped, counted and logged.

Names a check cannot vouch for (a plugin returning ``{"rows in": 3}``) are skipped rather than
failing the batch: the metrics API would refuse them, and one bad name must not lose the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from app.db.session import session_scope
from app.metrics.validation import MAX_BATCH, valid_component, valid_metric_name

if TYPE_CHECKING:
    from app.checks.base import CheckResult
    from app.detection.evaluator import RuleEvaluator
    from app.metrics.cache import MetricsCache
    from app.platform.runtime import Core

log = logging.getLogger("pipeline_guard.monitoring")

MAX_BUFFER = 100_000
FLUSH_INTERVAL_S = 1.0


class CheckMetrics:
    def __init__(
        self,
        state: Core,
        *,
        cache: MetricsCache,
        evaluator: RuleEvaluator,
        flush_interval: float = FLUSH_INTERVAL_S,
    ):
        self.state = state
        self.cache = cache  # what ingest needs: the read cache to invalidate, the evaluator to feed
        self.evaluator = evaluator
        self.flush_interval = flush_interval
        self._points: deque[dict[str, Any]] = deque()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self.written = 0
        self.dropped = 0
        self.skipped_names = 0

    def add(self, component: str, result: CheckResult) -> None:
        if not result.metrics or not valid_component(component):
            return
        ts = result.observed_at.isoformat()
        for name, value in result.metrics.items():
            if not valid_metric_name(name):
                self.skipped_names += 1
                continue
            self._points.append(
                {"component": component, "metric_name": name, "value": value, "timestamp": ts}
            )
        overflow = len(self._points) - MAX_BUFFER
        if overflow > 0:
            for _ in range(overflow):
                self._points.popleft()
            self.dropped += overflow
            log.warning("check metrics buffer full: dropped %d points", overflow)

    @property
    def buffered(self) -> int:
        return len(self._points)

    async def flush(self) -> int:
        """Write what is buffered; on failure the points stay at the front for the next try."""
        from app.metrics.service import MetricsService

        written = 0
        async with self._lock:
            while self._points:
                chunk = [self._points.popleft() for _ in range(min(MAX_BATCH, len(self._points)))]
                try:
                    async with session_scope(self.state.sessionmaker) as session:
                        await MetricsService(
                            session, self.state, cache=self.cache, evaluator=self.evaluator
                        ).record(chunk)
                except BaseException:  # cancelled too: the chunk goes back, nothing is lost
                    self._points.extendleft(reversed(chunk))
                    raise
                written += len(chunk)
        self.written += written
        return written

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="monitoring:check-metrics")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self.flush()  # best effort on shutdown: the results themselves are already written

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            try:
                await self.flush()
            except Exception as exc:  # noqa: BLE001 - the database may be down: keep the points, try again
                log.warning(
                    "writing check metrics failed (%s); %d points kept", type(exc).__name__, self.buffered
                )
