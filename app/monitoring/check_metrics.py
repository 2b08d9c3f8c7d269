"""Numbers a check reports (``CheckResult.metrics``) become metric points of its component.

The scheduler hands every result with numbers to ``CheckMetrics.add``; a flusher task writes the
buffered points into the metrics store (raw points, rollup deltas and the series' latest values,
exactly as points pushed over the API are stored, in one transaction), in its own transactions: a
failing metrics write never holds up the check results, and a failed write is retried on the next
tick. After the commit the metrics read cache is invalidated and the points are offered to the rule
evaluator, as ingest does. The buffer is bounded: past ``MAX_BUFFER`` the oldest points are dropped,
counted and logged.

When they are written: every point at the next tick (every second) while fewer than
``BATCH_ABOVE_RATE`` points a second arrive for series no rule watches. Above that rate (a large
fleet: 2,000 a second at 20,000 components @ 10 s) the points of a series a rule watches (every series
until the rules are loaded) are still written at the next tick, and the others once their minute is
over, each series' points of the minute in one batch, spread over the next ``DRAIN_TICKS`` ticks.
Every point of one batch adds one rollup delta per bucket (per series, per minute, ten minutes and
hour), and the compactor later merges each delta: one point per batch made three deltas per probe, a
minute's six probes in one batch make three. ``flush()`` (the scheduler's flush, shutdown) writes
everything buffered.

This is the per-probe path (an http check reports its status code on every probe: 2,000 points a
second at 20,000 components @ 10 s), so it skips what the API's ingest spends on untrusted input:
the points are checked once when buffered (a valid name, a finite number) and kept as tuples, the
batch is built straight from them (no per-point dicts, no ISO timestamps parsed back), and when
every series has one point in the batch (the usual case: a check reports once per interval) each
rollup delta is the sketch of that single value, encoded once per distinct value.

Names a check cannot vouch for (a plugin returning ``{"rows in": 3}``) and values the store refuses
(NaN, infinities, beyond +-1e150) are skipped rather than failing the batch: the metrics API would
refuse them, and one bad point must not lose the others. Points of a component deleted since its
probe are dropped when unknown components are not allowed (the API would refuse the whole batch).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from array import array
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from app.db.models import Component
from app.db.session import session_scope, write_briefly
from app.metrics.ingest_pg import ingest_for
from app.metrics.rollups import MINUTE, build_deltas, delta_fields, sketch_of
from app.metrics.validation import (
    MAX_ABS_VALUE,
    MAX_BATCH,
    Batch,
    Series,
    Stamp,
    make_stamp,
    valid_component,
    valid_metric_name,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.checks.base import CheckResult
    from app.detection.evaluator import RuleEvaluator
    from app.metrics.cache import MetricsCache
    from app.platform.core import Core

log = logging.getLogger("pipeline_guard.monitoring")

# Points kept while the database is unavailable (a minute of 20,000 components @ 10 s is 120,000)
# before the oldest are dropped (counted, logged).
MAX_BUFFER = 300_000
FLUSH_INTERVAL_S = 1.0
TICK_POINTS = 2_000  # points per transaction of finished minutes, and at least this many per tick
DRAIN_TICKS = 20  # a finished minute's points are written within about this many ticks
# Points a second (of series no rule watches) from which a series' minute is written in one batch
# rather than at the next tick: below it the compactor's cost per point is small, and points are fresh.
BATCH_ABOVE_RATE = 200.0
_CACHED = 50_000  # series, bucket starts and single-value deltas kept between flushes (then cleared)

# One buffered point: component, metric name, value, observed at.
CheckPoint = tuple[str, str, float, datetime]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


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
        self._points: deque[CheckPoint] = deque()  # written at the next tick
        # Points of series no rule watches, by minute then series (values, and times in microseconds
        # since the epoch: 16 bytes a point, a minute of a large fleet is kept): written once their
        # minute is over.
        self._later: dict[int, dict[tuple[str, str], tuple[array[float], array[int]]]] = {}
        self._later_count = 0
        self._later_sizes: dict[int, int] = {}  # points kept by minute
        self.batch_above_rate = BATCH_ABOVE_RATE
        self._later_added = 0  # points of series no rule watches added since the last tick
        self._last_tick = time.monotonic()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._names: set[str] = set()  # metric names already found valid
        self._deltas = SingleValueDeltas()
        self._series: dict[tuple[str, str], Series] = {}
        self.written = 0
        self.dropped = 0
        self.skipped_names = 0
        self.skipped_values = 0
        self.unknown_components = 0  # points of components deleted before their points were written

    def add(self, component: str, result: CheckResult) -> None:
        if not result.metrics or not valid_component(component):
            return
        at = result.observed_at
        wants = self.evaluator.wants
        by_series: dict[tuple[str, str], tuple[array[float], array[int]]] | None = None
        micros = minute = later = 0
        for name, value in result.metrics.items():
            if name not in self._names:
                if not valid_metric_name(name):
                    self.skipped_names += 1
                    continue
                if len(self._names) < _CACHED:
                    self._names.add(name)
            if type(value) is not float:
                if type(value) is not int:
                    self.skipped_values += 1
                    continue
                try:
                    value = float(value)
                except OverflowError:
                    self.skipped_values += 1
                    continue
            if not -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE:  # false for NaN too
                self.skipped_values += 1
                continue
            if wants(component, name):
                self._points.append((component, name, value, at))
                continue
            if by_series is None:
                micros = (at - _EPOCH) // _ONE_US
                minute = micros // 60_000_000
                by_series = self._later.get(minute)
                if by_series is None:
                    by_series = self._later[minute] = {}
            kept = by_series.get((component, name))
            if kept is None:
                kept = by_series[(component, name)] = (array("d"), array("q"))
            kept[0].append(value)
            kept[1].append(micros)
            later += 1
        if later:
            self._later_count += later
            self._later_added += later
            self._later_sizes[minute] = self._later_sizes.get(minute, 0) + later
        if self.buffered > MAX_BUFFER:
            self._drop_oldest(self.buffered - MAX_BUFFER)

    def _drop_oldest(self, count: int) -> None:
        self.dropped += count
        log.warning("check metrics buffer full: dropped %d points", count)
        while count > 0 and self._later:
            minute = min(self._later)
            by_series = self._later[minute]
            while count > 0 and by_series:
                key = next(iter(by_series))
                values, times = by_series[key]
                n = min(count, len(values))
                del values[:n], times[:n]
                if not values:
                    del by_series[key]
                count -= n
                self._later_count -= n
                self._later_sizes[minute] -= n
            if not by_series:
                del self._later[minute], self._later_sizes[minute]
        for _ in range(min(count, len(self._points))):
            self._points.popleft()

    @property
    def buffered(self) -> int:
        return len(self._points) + self._later_count

    async def flush(self) -> int:
        """Write everything buffered (the scheduler's flush, shutdown); on failure the points stay
        buffered for the next try."""
        return await self._write(every_minute=True, budget=None)

    async def tick(self) -> int:
        """The loop's write. Below `batch_above_rate`: everything buffered. Above it: the points rules
        watch, then those of minutes that are over, at most what drains that backlog within
        `DRAIN_TICKS` ticks (a minute's points are not written in one burst that would hold up the
        probes)."""
        now = time.monotonic()
        rate = self._later_added / max(now - self._last_tick, self.flush_interval)
        self._later_added, self._last_tick = 0, now
        if rate < self.batch_above_rate:
            return await self._write(every_minute=True, budget=None)
        return await self._write(every_minute=False, budget=max(TICK_POINTS, self._ready() // DRAIN_TICKS))

    def _ready(self) -> int:
        now_minute = int(time.time()) // 60
        return sum(n for minute, n in self._later_sizes.items() if minute < now_minute)

    async def _write(self, *, every_minute: bool, budget: int | None) -> int:
        written = 0
        async with self._lock:
            while self._points:
                chunk = [self._points.popleft() for _ in range(min(MAX_BATCH, len(self._points)))]
                written += await self._write_chunk(chunk)
            now_minute = int(time.time()) // 60
            while self._later and (budget is None or written < budget):
                minute = min(self._later)
                if minute >= now_minute and not every_minute:
                    break
                chunk = self._take(minute)
                written += await self._write_chunk(chunk)
        return written

    def _take(self, minute: int) -> list[CheckPoint]:
        """Whole series of ``minute``, up to about ``TICK_POINTS`` points: each series' points of the
        minute go in one batch, so its rollups get one delta per bucket, not one per point."""
        by_series = self._later[minute]
        chunk: list[CheckPoint] = []
        while by_series and len(chunk) < TICK_POINTS:
            (component, name), (values, times) = by_series.popitem()
            chunk.extend(
                (component, name, value, _EPOCH + timedelta(microseconds=us))
                for value, us in zip(values, times, strict=True)
            )
        self._later_count -= len(chunk)
        self._later_sizes[minute] -= len(chunk)
        if not by_series:
            del self._later[minute], self._later_sizes[minute]
        return chunk

    async def _write_chunk(self, chunk: list[CheckPoint]) -> int:
        try:
            async with session_scope(self.state.sessionmaker) as session:
                await write_briefly(session)
                batch = await self._store(session, chunk)
        except BaseException:  # cancelled too: the chunk goes back, written at the next tick
            self._points.extendleft(reversed(chunk))
            raise
        if batch is None:
            return 0
        self._committed(batch)
        self.written += len(batch)
        return len(batch)

    async def _store(self, session: AsyncSession, chunk: list[CheckPoint]) -> Batch | None:
        """Raw points, rollup deltas and the series' latest values, in the caller's transaction."""
        if not self.state.settings.pipeline.monitoring.allow_unknown_metric_components:
            names = {point[0] for point in chunk}
            known = set(
                (await session.execute(select(Component.name).where(Component.name.in_(names)))).scalars()
            )
            if len(known) < len(names):
                kept = [point for point in chunk if point[0] in known]
                self.unknown_components += len(chunk) - len(kept)
                chunk = kept
                if not chunk:
                    return None
        batch = self._batch(chunk)
        ingest = ingest_for(session.get_bind().dialect.name)
        await ingest.insert_points(session, batch)
        single = len(batch.series) == len(batch)  # every series once: one single-value delta per bucket
        await ingest.insert_rollups(session, self._deltas.rows(batch) if single else build_deltas(batch))
        latest = [(batch.series[sid], i) for sid, i in batch.latest().items()]
        # Sorted so concurrent batches lock series rows in the same order (no deadlocks).
        latest.sort(key=lambda si: (si[0].component, si[0].metric_name))
        await ingest.upsert_series(
            session, [(s, batch.values[i], batch.stamps[i].ts) for s, i in latest], datetime.now(UTC)
        )
        return batch

    def _batch(self, chunk: list[CheckPoint]) -> Batch:
        """The columnar batch the store takes, built from checked points (series without labels)."""
        known = self._series
        if len(known) > _CACHED:
            known.clear()
        index: dict[tuple[str, str], int] = {}
        series: list[Series] = []
        stamp_of: dict[datetime, Stamp] = {}
        sids: list[int] = []
        values: list[float] = []
        stamps: list[Stamp] = []
        for component, name, value, at in chunk:
            key = (component, name)
            sid = index.get(key)
            if sid is None:
                s = known.get(key)
                if s is None:
                    s = known[key] = Series(component, name, "", {}, "{}")
                sid = index[key] = len(series)
                series.append(s)
            stamp = stamp_of.get(at)
            if stamp is None:
                stamp = stamp_of[at] = make_stamp(at)
            sids.append(sid)
            values.append(value)
            stamps.append(stamp)
        return Batch(series, sids, values, stamps)

    def _committed(self, batch: Batch) -> None:
        """After the commit, as ingest does: count, invalidate the read cache, feed the rules."""
        self.state.metrics.points_ingested.inc(len(batch))
        self.cache.invalidate(batch.components)
        evaluator = self.evaluator
        points = batch.points(lambda s: evaluator.wants(s.component, s.metric_name))
        if points:
            evaluator.offer(points)

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
                await self.tick()
            except Exception as exc:  # noqa: BLE001 - the database may be down: keep the points, try again
                log.warning(
                    "writing check metrics failed (%s); %d points kept", type(exc).__name__, self.buffered
                )


class SingleValueDeltas:
    """The rollup deltas of a batch in which every series has one point, the rows ``build_deltas``
    would make (same order): per point one fresh minute row, the sketch of that one value. The
    statistics and the encoded sketch depend only on the value, so they are made once per distinct
    value (an http check's status codes are a handful)."""

    def __init__(self) -> None:
        self._of_value: dict[float, tuple[Any, ...]] = {}
        self._starts: dict[int, datetime] = {}

    def rows(self, batch: Batch) -> list[tuple]:
        of_value, starts = self._of_value, self._starts
        if len(of_value) > _CACHED:
            of_value.clear()
        if len(starts) > _CACHED:
            starts.clear()
        stats: list[tuple[Any, ...]] = []
        for value in batch.values:
            found = of_value.get(value)
            if found is None:
                found = of_value[value] = delta_fields(sketch_of([value]), fresh=True)
            stats.append(found)
        series = [batch.series[sid] for sid in batch.sids]
        rows: list[tuple] = []
        for s, stamp, st in zip(series, batch.stamps, stats, strict=True):
            start = stamp.minute
            at = starts.get(start)
            if at is None:
                at = starts[start] = datetime.fromtimestamp(start, UTC)
            rows.append((MINUTE, s.component, s.metric_name, s.series_key, at, *st))
        return rows
