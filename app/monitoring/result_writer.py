"""The scheduler's write side: buffered check results written in batches, one transaction per flush.

No acknowledged result is lost: `flush()` runs the write in its own shielded task (cancelling the
caller never abandons a batch half-way); a failed flush puts the batch back at the front of the
buffer and the flusher retries with back-off; past `MAX_BUFFER` the oldest results are dropped
(counted, exported, logged); `close()` drains the buffer, retrying for up to `SHUTDOWN_FLUSH_S`.

Lease hand-over (a draining replica) rides on a flush: a component listed by `hand_over_after_probe`
triggers a flush as soon as its next result is buffered, and its lease is released in that flush's
transaction with the next due time (`lease_hand_over.py`).

A result that changes a status (`lookahead.py` tells at once) is flushed at once; while another
flush is being written it does not wait for it: it goes in its own small transaction beside it (an
urgent lane), unless that flush holds earlier results of the same component (then right after it).
Up to `URGENT_LANES` such transactions run side by side (a decisive result does not wait for another
component's); past that, what arrives waits for the first lane free and goes in one transaction.
Not on SQLite (the engine's dialect tells): its one writer would make that transaction wait in the
driver's busy handler (sleeping up to 100 ms between retries) instead of starting right after the
flush in progress. A component's results are never in two flushes at once, so they are written in
order and each flush advances only its own components.

The writer owns the buffer and the flush lock; the scheduler owns the in-memory view (`tracked`),
which the writer advances only after a commit, and is called back to forget a component, to tell
when checks are due, and to publish the health of the components a flush changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from app.db.session import session_scope, write_briefly
from app.db.types import utcnow
from app.monitoring.lease_hand_over import LeaseHandOver
from app.monitoring.lookahead import Lookahead
from app.monitoring.ownership import Ownership
from app.monitoring.recorder import write_batch
from app.monitoring.tracked import Observation, RecoveryMark, Tracked

if TYPE_CHECKING:
    from app.monitoring.probe_metrics import ProbeMetrics
    from app.platform.core import Core

log = logging.getLogger("pipeline_guard.monitoring")

MAX_BUFFER = 200_000  # results kept across failing flushes before the oldest are dropped (counted, logged)
# One transaction writes at most this many results: a backlog is written in several short
# transactions back to back, so SQLite's write lock is never held for the whole backlog and the
# other loops' transactions get in between.
MAX_BATCH = 2_000
# Back-pressure: past this many buffered results the dispatcher waits (the lag shows it) until the
# buffer is back under it, instead of probing faster than the database can store.
HIGH_WATER = 20_000
SHUTDOWN_FLUSH_S = 20.0  # how long close() keeps retrying the final flush
# Urgent lanes written side by side at most (each holds a pooled connection while it writes).
URGENT_LANES = 4

Item = Observation | RecoveryMark


class ResultWriter:
    def __init__(
        self,
        state: Core,
        ownership: Ownership,
        tracked: dict[int, Tracked],
        probe_metrics: ProbeMetrics,
        *,
        forget: Callable[[int], None],
        due_in: Callable[[set[int]], dict[int, float | None]],
        publish_health: Callable[[Iterable[int]], None],
        flush_interval: float = 0.5,
        flush_size: int = 1000,
    ):
        self.state = state
        self.ownership = ownership
        self.tracked = tracked  # the scheduler's map: read for a write, advanced after its commit
        # Components a recovery action is running on -> until when (in memory: an action is local to
        # this process). Their failures do not count; the action's end mark or the deadline ends it.
        self.acting: dict[int, datetime] = {}
        self.probe_metrics = probe_metrics
        self._forget = forget
        self._publish_health = publish_health
        self.flush_interval = flush_interval
        self.flush_size = flush_size
        self._buffer: list[Item] = []
        self._flush_lock = asyncio.Lock()
        # The urgent lane: a result that changes a status while a flush is being written goes in its
        # own transaction at once, beside that flush, instead of waiting for it. Each component's
        # results are in at most one flush at a time (`_in_flight`), so they are written in order and
        # each flush advances only its own components' `tracked`.
        self._in_flight: set[int] = set()
        self._urgent: set[int] = set()  # components whose decisive result waits for an urgent lane
        self._lanes: set[asyncio.Future] = set()  # the urgent lanes running (at most URGENT_LANES)
        self.urgent_lane_flushes = 0
        # SQLite has one writer: a transaction beside a flush in progress would only wait in the
        # driver's busy handler (sleeping 1..100 ms between retries) instead of right after it.
        # Told by the engine the writer writes through, not by the configured URL.
        bind = state.sessionmaker.kw.get("bind")
        self.concurrent_writes = bind is not None and bind.dialect.name != "sqlite"
        self._flush_soon = asyncio.Event()
        self._flush_stop = asyncio.Event()
        self._flushes: set[asyncio.Future] = set()
        self._flusher: asyncio.Task | None = None
        self._hand_over = LeaseHandOver(ownership, due_in=due_in, forget=forget)
        self._lookahead = Lookahead(tracked)
        self._room = asyncio.Event()  # set while the buffer is under HIGH_WATER
        self._room.set()
        self.urgent_flushes = 0
        self._closing = False
        self.dropped_results = 0
        self.fenced_results = 0  # results not written because the component's lease moved on
        self.flush_failures = 0
        self.results_written = 0
        # Per committed write: how long its oldest result waited from observation to commit.
        self.write_lags: deque[float] = deque(maxlen=1000)
        self.last_flush_error: str | None = None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        self._closing = False
        self._flush_stop = asyncio.Event()

    def start(self) -> None:
        self._flusher = asyncio.create_task(self._flush_loop(), name="monitoring:flush")

    def stop(self) -> None:
        """Shutdown begins: the flusher finishes its current batch (never cancelled mid-write) and exits."""
        self._closing = True
        self._flush_soon.set()
        self._flush_stop.set()

    async def close(self) -> None:
        """Wait for the flusher, then write everything still buffered."""
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            await asyncio.gather(flusher, return_exceptions=True)
        try:
            await self._drain()
        except asyncio.CancelledError:
            # Shutdown was cut short (the loop's stop timeout): what is left is lost; say so.
            self._drop(len(self._buffer), "shutdown was cut short before the buffer was written")
            self._buffer = []
            raise

    async def _drain(self) -> None:
        """Shutdown: flush until the buffer is empty, retrying failures for up to
        `SHUTDOWN_FLUSH_S`; what still cannot be written is counted and logged as dropped."""
        deadline = time.monotonic() + SHUTDOWN_FLUSH_S
        delay = 0.1
        while self._buffer or self._flushes:
            # A failed flush was logged by flush(): pause below, then retry.
            with contextlib.suppress(Exception):
                if self._flushes:
                    await asyncio.gather(*self._flushes, return_exceptions=True)
                if self._buffer:
                    await self.flush()
                continue
            if time.monotonic() + delay > deadline:
                self._drop(len(self._buffer), "the database stayed unavailable during shutdown")
                self._buffer = []
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _drop(self, count: int, why: str) -> None:
        if count <= 0:
            return
        self.dropped_results += count
        self.state.metrics.results_dropped.inc(count)
        log.error("dropped %d check results: %s (last error: %s)", count, why, self.last_flush_error)

    # ------------------------------------------------------------------ buffering
    def add(self, observation: Observation) -> None:
        """Buffer one probe's result (the hot path). A component being handed over (SIGTERM drain)
        flushes at once, so its lease is released right after its last probe."""
        buffer = self._buffer
        buffer.append(observation)
        if len(buffer) >= HIGH_WATER:
            self._room.clear()
        if self._lookahead.decides(observation):
            # A result that changes a status is written at once (not after the flush interval): its
            # transaction publishes the transition and wakes healing on commit.
            self.urgent_flushes += 1
            if (
                self._flush_lock.locked()
                and self.concurrent_writes
                and observation.component_id not in self._in_flight
            ):
                self._write_urgently(observation.component_id)  # not behind the flush being written
            else:
                self._flush_soon.set()
        elif len(buffer) >= self.flush_size or self._hand_over.wants_flush(observation.component_id):
            self._flush_soon.set()

    @property
    def backlogged(self) -> bool:
        return not self._room.is_set()

    async def wait_room(self) -> None:
        """Back-pressure for the dispatcher: returns at once unless HIGH_WATER results are waiting."""
        if not self._room.is_set():
            await self._room.wait()

    async def write_now(self, item: Item) -> int:
        """Buffer `item` and flush at once (a recovery mark must be persisted before returning)."""
        self._buffer.append(item)
        self._lookahead.restart(item.component_id)  # a recovery mark moves the machine
        return await self.flush_all()

    async def flush_all(self) -> int:
        """Flush until the buffer is empty and the urgent lane has written what it took, in bounded
        transactions. Returns the number written (by these flushes)."""
        written = await self.flush()
        while True:
            while self._buffer:
                written += await self.flush()
            lanes = {lane for lane in self._lanes if not lane.done()}
            if not lanes:
                return written
            await asyncio.wait(lanes)  # a failed lane put its items back: flushed above

    # ------------------------------------------------------------------ lease hand-over (replicas)
    def hand_over_after_probe(self, component_ids: set[int]) -> None:
        self._hand_over.after_probe(component_ids)

    def cancel_hand_over(self, component_ids: Iterable[int]) -> None:
        self._hand_over.cancel(component_ids)

    # ------------------------------------------------------------------ flush
    async def _flush_loop(self) -> None:
        """Flush every `flush_interval` or when `flush_size` results are buffered; after a failure
        wait (exponential back-off up to 5 s) and retry with the buffer kept."""
        backoff = 0.0
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_soon.wait(), timeout=self.flush_interval)
            self._flush_soon.clear()
            if self._closing:
                return  # close() drains
            try:
                await self.flush()
                while len(self._buffer) >= MAX_BATCH and not self._closing:
                    await asyncio.sleep(0)  # let the other loops' transactions in between two batches
                    await self.flush()
                backoff = 0.0
            except Exception:  # noqa: BLE001 - logged in flush; the items are back in the buffer
                backoff = min(max(backoff * 2, self.flush_interval), 5.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._flush_stop.wait(), timeout=backoff)

    async def flush(self) -> int:
        """Write buffered results in one transaction. Returns the number of results written.

        The write runs in its own task, shielded: cancelling the caller (shutdown, a request that
        went away) never abandons a batch half-way, and `close()` waits for it. On failure the
        batch goes back to the front of the buffer (bounded by MAX_BUFFER) and the error is raised."""
        task = asyncio.ensure_future(self._flush_locked())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)
        return await asyncio.shield(task)

    async def _flush_locked(self) -> int:
        async with self._flush_lock:
            self.probe_metrics.publish_counts()
            items = self._take(MAX_BATCH)
            if not items and self._buffer and self._lanes:
                # What is left belongs to components the urgent lanes are writing: after them, in order.
                await asyncio.wait(set(self._lanes))
                items = self._take(MAX_BATCH)
            if not items:
                return 0
            return await self._write(items)

    def _take(self, limit: int, components: set[int] | None = None) -> list[Item]:
        """Up to `limit` buffered items, oldest first, of components no other flush is writing (and of
        `components` only, when given). What is taken of a component is always its oldest items."""
        if not self._in_flight and components is None:
            items, self._buffer = self._buffer[:limit], self._buffer[limit:]
        else:
            items, kept = [], []
            busy = self._in_flight
            for item in self._buffer:
                cid = item.component_id
                if len(items) < limit and cid not in busy and (components is None or cid in components):
                    items.append(item)
                else:
                    kept.append(item)
            self._buffer = kept
        self._in_flight.update(item.component_id for item in items)
        return items

    def _write_urgently(self, component_id: int) -> None:
        self._urgent.add(component_id)
        if len(self._lanes) < URGENT_LANES:  # else the first lane free takes it
            task = asyncio.ensure_future(self._urgent_lane())
            self._lanes.add(task)
            self._flushes.add(task)
            task.add_done_callback(self._urgent_lane_done)

    async def _urgent_lane(self) -> None:
        """Write the decisive results handed to the lanes (and what is buffered before them for the
        same components), one small transaction each round, until none waits. A component taken by
        one lane is in flight: no other lane (nor flush) takes its later results before it commits."""
        while self._urgent:
            components, self._urgent = self._urgent, set()
            if components & self._in_flight:
                self._flush_soon.set()  # in the flush being written: the flusher takes them right after
                components -= self._in_flight
            items = self._take(MAX_BATCH, components)
            if items:
                self.urgent_lane_flushes += 1
                await self._write(items)

    def _urgent_lane_done(self, task: asyncio.Future) -> None:
        self._flushes.discard(task)
        self._lanes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._urgent.clear()
            self._flush_soon.set()  # the items are back in the buffer: the flusher retries them

    async def _write(self, items: list[Item]) -> int:
        """One transaction for `items` (their components marked in flight by `_take`), then the
        in-memory view advanced; only then may another flush take those components. On failure the
        items go back to the front of the buffer."""
        taken = {item.component_id for item in items}
        try:
            return await self._write_batch(items)
        finally:
            self._in_flight.difference_update(taken)

    async def _write_batch(self, items: list[Item]) -> int:
        taken_seq = self._lookahead.seq
        try:
            async with session_scope(self.state.sessionmaker) as session:
                await write_briefly(session)
                items, alive = await self._fenced(session, items)
                applied = await write_batch(
                    session, items, self.tracked, self.state.events, self.acting, alive
                )
                handing = await self._hand_over.in_flush(session, items)
        except BaseException as exc:
            self.flush_failures += 1
            self.last_flush_error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning(
                "writing %d check results failed (%s); kept for a retry",
                len(items),
                self.last_flush_error,
            )
            self._buffer = items + self._buffer
            if len(self._buffer) > MAX_BUFFER:
                excess = len(self._buffer) - MAX_BUFFER
                self._buffer = self._buffer[excess:]
                self._drop(excess, f"more than {MAX_BUFFER} results waiting for the database")
            raise
        finally:
            if len(self._buffer) < HIGH_WATER:
                self._room.set()
        for cid, fresh in applied.tracked.items():
            current = self.tracked.get(cid)
            if current is not None:
                # Configuration reloaded while the batch was written stays (thresholds, labels...).
                fresh.name, fresh.critical, fresh.labels, fresh.thresholds = (
                    current.name,
                    current.critical,
                    current.labels,
                    current.thresholds,
                )
                self.tracked[cid] = fresh
        self._lookahead.written({item.component_id for item in items}, taken_seq)
        self._publish_health(applied.tracked)
        self._hand_over.committed(handing)
        self.results_written += applied.results_written
        self._record_lag(items)
        return applied.results_written

    def _record_lag(self, items: list[Item]) -> None:
        observed = [item.result.observed_at for item in items if isinstance(item, Observation)]
        if observed:
            lag = max(0.0, (utcnow() - min(observed)).total_seconds())
            self.write_lags.append(lag)
            self.state.metrics.result_write_lag.set(lag)

    async def _fenced(self, session, items: list[Item]) -> tuple[list[Item], set[int] | None]:
        """With leases (several replicas), write only the results of components this replica still
        holds at the same epoch; the lease rows stay locked until this transaction ends. Results of
        components taken over meanwhile are dropped: their new owner probes them itself. Also returns
        the components known to exist until the commit when the fence tells (its lease rows go with
        their components), else None (the write reads which are still there)."""
        fence = getattr(self.ownership, "fence_live_writes", None)
        if fence is None or not items:
            return items, None
        allowed, proven = await fence(session, {item.component_id for item in items})
        kept = [item for item in items if item.component_id in allowed]
        if len(kept) != len(items):
            self.fenced_results += len(items) - len(kept)
            for cid in {item.component_id for item in items} - allowed:
                self._forget(cid)
        return kept, allowed if proven else None
