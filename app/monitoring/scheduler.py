"""The check scheduler: each owned component at its own interval, start-to-start with jitter,
bounded concurrency, per-check timeouts, batched writes.

Three tasks while running (started by `SchedulerLoop`, a LoopService): the loop itself refreshes
the component list every tick (API changes apply without a restart: rows whose `version` changed
are reloaded), the dispatcher (`timetable.py`: due times and the dispatch loop) moves due checks
onto the queue of a `WorkerPool` (`workers.py`, `max_workers` long-lived workers; `Prober` in
`probes.py` runs each check), and the `ResultWriter`'s
flusher (`result_writer.py`) writes buffered results every `flush_interval` or `flush_size` results.
`run_once()` (tests) runs every owned check once, waits for them and flushes. Keeping the tracked
components in step with the database (the refresh) and publishing their health is `ComponentTracking`
(`tracking.py`); this module holds the lifecycle, the public API and the probe runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from datetime import datetime
from typing import TYPE_CHECKING, Any

from app.checks.registry import default_registry
from app.components.registry_watch import RegistryWatch
from app.db.types import utcnow
from app.monitoring import state_machine as sm
from app.monitoring.check_metrics import CheckMetrics
from app.monitoring.hearing import Hearing
from app.monitoring.ownership import OwnAll, Ownership
from app.monitoring.probe_metrics import ProbeMetrics
from app.monitoring.probes import Entry, Prober
from app.monitoring.result_writer import SHUTDOWN_FLUSH_S, ResultWriter
from app.monitoring.timetable import Timetable
from app.monitoring.tracked import Observation, RecoveryMark, Tracked
from app.monitoring.tracking import ComponentTracking
from app.monitoring.workers import WorkerPool
from app.platform.loops import LoopService

if TYPE_CHECKING:
    import aiohttp

    from app.healing.strategies.registry import StrategyRegistry
    from app.health.health_map import HealthMap
    from app.platform.core import Core
    from app.security.crypto import SecretBox

log = logging.getLogger("pipeline_guard.monitoring")


class Scheduler(ComponentTracking):
    def __init__(
        self,
        state: Core,
        *,
        ownership: Ownership,
        health: HealthMap,
        critical: set[str],
        secret_box: SecretBox,
        check_metrics: CheckMetrics,
        replica_id: str | None = None,
        flush_interval: float = 0.5,
        flush_size: int = 1000,
        registry: Any = None,
        hearing: Hearing | None = None,
    ):
        """``health`` / ``critical``: the runtime's health map and critical set, kept current here."""
        self.state = state
        self.settings = state.settings
        self.health = health
        self.critical = critical
        self.ownership: Ownership = ownership
        self.registry = registry or default_registry()
        self.prober = Prober(
            state, self.registry, secret_box=secret_box, replica_id=replica_id, hearing=hearing
        )
        self.entries: dict[int, Entry] = {}
        self.tracked: dict[int, Tracked] = {}
        # Every enabled component seen (with or without a check): id -> (version, created_at). The
        # creation time tells a deleted and re-created component from an edit even where the id and
        # version look the same, so the new one never inherits the old one's state.
        self._versions: dict[int, tuple[int, Any]] = {}
        self.registry_watch = RegistryWatch()  # the refresh's cheap change check
        self._tracked_generation = self._published_generation = 0
        self._diffed = None  # what the last refresh diffed (tracking.py skips the diff while it stands)
        self._owns_every_enabled = False
        self._loaded = False  # the first refresh is done
        self.timetable = Timetable(lambda: self.settings.monitoring.jitter)
        self._refresh_lock = asyncio.Lock()
        self.pool = WorkerPool(self.settings.max_workers, self._run_entry)
        self.probe_metrics = ProbeMetrics(state.metrics)
        self.writer = ResultWriter(
            state,
            self.ownership,
            self.tracked,
            self.probe_metrics,
            forget=self._forget,
            due_in=self.due_in,
            publish_health=self._publish_health,
            flush_interval=flush_interval,
            flush_size=flush_size,
        )
        self.check_metrics = check_metrics
        self._background: list[asyncio.Task] = []
        self._requested: set[int] = set()
        self._closing = False
        self._stopping: asyncio.Future[None] | None = None  # stop_probing's task, once shutdown began
        # Figures for /status/detailed and the benchmark.
        self.lags: deque[float] = deque(maxlen=20_000)
        self.completed: deque[float] = deque(maxlen=100_000)  # monotonic completion times
        self.checks_run = 0
        self.unrecorded_results = 0  # probes whose component was forgotten while they ran

    # Write-side figures (the writer keeps them).
    @property
    def dropped_results(self) -> int:
        return self.writer.dropped_results

    @property
    def fenced_results(self) -> int:
        """Results not written because the component's lease moved on."""
        return self.writer.fenced_results

    @property
    def flush_failures(self) -> int:
        return self.writer.flush_failures

    @property
    def last_flush_error(self) -> str | None:
        return self.writer.last_flush_error

    @property
    def holds_whole_fleet(self) -> bool:
        """Loaded, and checking every enabled component: one replica, or the one that holds a current
        lease on every enabled component (nobody else can write a status). Then the health map is the
        fleet."""
        if not self._loaded:
            return False
        if isinstance(self.ownership, OwnAll) or bool(getattr(self.ownership, "single", False)):
            return True
        leases_current = getattr(self.ownership, "leases_current", None)
        diffed = self._diffed
        return (
            self._owns_every_enabled
            and diffed is not None
            and diffed.ownership_generation == getattr(self.ownership, "generation", None)  # no lease moved
            and leases_current is not None
            and leases_current()
        )

    @property
    def http_session(self) -> aiohttp.ClientSession | None:
        return self.prober.http_session

    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        self.prober.open()
        self._closing = False
        self._stopping = None
        self.writer.open()
        await self.refresh()

    @property
    def is_open(self) -> bool:
        """Opened (by its loop, or a test driving it) and not closed: it checks and can verify."""
        return self.prober.http_session is not None and not self._closing

    def start_background(self) -> None:
        self.pool.start()
        self._background = [
            asyncio.create_task(
                self.timetable.dispatch(self.entries, self.pool, self.writer, lambda: self._closing),
                name="monitoring:dispatch",
            )
        ]
        self.writer.start()
        self.check_metrics.start()

    async def stop_probing(self) -> None:
        """Shutdown, first step (before the leases are released): no new check starts, in-flight ones
        finish (briefly), and every result they produced is written while this replica still owns
        the components. Bounded: what the database does not take within `SHUTDOWN_FLUSH_S` is
        counted and logged as dropped. Idempotent; recovery marks can still be written afterwards.

        Runs as its own task, shielded: a caller that gives up waiting (a loop's stop timeout) does not
        cut the drain short, and the next caller (`close()`) waits for the same task."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop_probing())
        await asyncio.shield(self._stopping)

    async def _stop_probing(self) -> None:
        self._closing = True
        self.timetable.wake.set()
        self.writer.stop()
        dispatcher = self._background[0] if self._background else None
        self._background = []
        if dispatcher is not None:
            dispatcher.cancel()  # it only waits for due items and free workers
            await asyncio.gather(dispatcher, return_exceptions=True)
        await self.pool.stop()  # queued checks are not started, in-flight ones get 2 s
        await self.writer.close()
        log.info(
            "monitoring stopped probing: %d checks run, %d results written, %d dropped, "
            "%d not written (component forgotten or its lease moved on)",
            self.checks_run,
            self.writer.results_written,
            self.dropped_results,
            self.fenced_results + self.unrecorded_results,
        )

    async def close(self) -> None:
        """Stop probing and write everything buffered (`stop_probing`, if the lease manager has not
        already), then the checks' metric points. The flusher is never cancelled mid-write."""
        await self.stop_probing()
        await self.writer.close()  # a recovery mark written since stop_probing
        await self.check_metrics.close()
        await self.prober.close()

    # ------------------------------------------------------------------ public API (healing, heartbeats)
    def request_check(self, component_id: int) -> None:
        """Run this component's check as soon as possible (e.g. to verify a recovery action)."""
        entry = self.entries.get(component_id)
        if entry is None:
            self._requested.add(component_id)  # not loaded yet: due right after the next refresh
            return
        self.timetable.make_due_now(entry)

    def note_action_started(self, component_id: int, until: datetime) -> None:
        """A recovery action starts on this component: until it ends (`note_recovery_action`) or
        `until`, its failures are the action's own effect and change nothing."""
        self.writer.acting[component_id] = until

    def note_action_ended(self, component_id: int) -> None:
        """The action is over with nothing to verify: its failures count again."""
        self.writer.acting.pop(component_id, None)

    async def note_recovery_action(
        self, component_id: int, action: str, at: datetime | None = None, grace_s: float | None = None
    ) -> str | None:
        """A recovery action just ran on this component: status `recovering` (only when it is in an
        incident), failures ignored for `grace_s` (the policy's grace period; `recovery_grace` when
        None) or until the first pass, `success_threshold` successes verify it. Persists the
        transition (and publishes HealthTransition) before returning the new status."""
        if component_id not in self.tracked:
            await self.refresh()
        if component_id not in self.tracked:
            return None
        await self.writer.write_now(RecoveryMark(component_id, action, at or utcnow(), grace_s))
        return self.tracked[component_id].machine.status if component_id in self.tracked else None

    # ------------------------------------------------------------------ lease hand-over (replicas)
    @property
    def dispatching(self) -> bool:
        """Checks run on their own schedule (the background tasks are up)."""
        return bool(self._background) and not self._closing

    def due_in(self, component_ids: set[int]) -> dict[int, float | None]:
        """Seconds until each component's next check is due here (None: not scheduled)."""
        now = time.monotonic()
        return {
            cid: (entry.due - now if (entry := self.entries.get(cid)) is not None else None)
            for cid in component_ids
        }

    def hand_over_after_probe(self, component_ids: set[int]) -> None:
        """Draining: after the next result of each of these components, flush at once and release its
        lease in that flush's transaction with the next due time (`ownership.hand_over`)."""
        self.writer.hand_over_after_probe(component_ids)

    async def finish_probes(self, component_ids: set[int], timeout: float = 2.0) -> None:
        """Hand-over at once: no new check of these components starts, and the running ones get up to
        `timeout` to finish, so their results are buffered before the caller writes them and lets the
        leases go (a result that arrives after its lease moved on is not written)."""
        for cid in component_ids:
            entry = self.entries.get(cid)
            if entry is not None:
                entry.generation += 1  # its heap items become stale: not dispatched again
        running = [e for cid in component_ids if (e := self.entries.get(cid)) is not None and e.running]
        deadline = time.monotonic() + timeout
        while running and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            running = [e for e in running if e.running]

    def forget(self, component_ids: set[int]) -> None:
        """Stop checking these components now (their lease went to another replica)."""
        self.writer.cancel_hand_over(component_ids)
        for cid in component_ids:
            self._forget(cid)

    def thresholds_for(self, component_id: int) -> sm.Thresholds | None:
        tracked = self.tracked.get(component_id)
        return tracked.thresholds if tracked else None

    def status_of(self, component_id: int) -> str | None:
        tracked = self.tracked.get(component_id)
        return tracked.machine.status if tracked else None

    async def run_once(self) -> None:
        """Tests: refresh, run every owned check once (concurrently, bounded), wait, flush."""
        await self.refresh()
        now = time.monotonic()
        runs = [self.pool.spawn(entry, now) for entry in list(self.entries.values()) if not entry.running]
        if runs:
            await asyncio.gather(*runs, return_exceptions=True)
        await self.flush()

    # ------------------------------------------------------------------ probes
    async def _run_entry(self, entry: Entry, due: float) -> None:
        started = time.monotonic()
        try:
            self.lags.append(started - due if started > due else 0.0)
            result = await self.prober.execute(entry, started)
        finally:
            entry.running = False
        self.checks_run += 1
        self.completed.append(time.monotonic())
        cid = entry.component_id
        if cid not in self.tracked:
            # Forgotten while probing (deleted, disabled, taken over): no result, no metric labels.
            self.unrecorded_results += 1
            return
        # Prometheus: counted here, published per flush, not one locked update per probe.
        self.probe_metrics.count(entry, result.outcome, result.latency_s)
        self.writer.add(Observation(cid, entry.kind, result))
        if result.metrics:
            self.check_metrics.add(entry.name, result)

    # ------------------------------------------------------------------ flush
    async def flush(self) -> int:
        """Write every buffered result (`ResultWriter.flush_all`), then the numbers the checks reported
        as metric points. Returns the number of results written."""
        written = await self.writer.flush_all()
        await self.check_metrics.flush()
        return written

    def stats(self) -> dict[str, Any]:
        lags = sorted(self.lags)
        write_lags = sorted(self.writer.write_lags)
        now = time.monotonic()
        recent = sum(1 for t in self.completed if now - t <= 60)
        window = min(60.0, now - self.completed[0]) if self.completed else 0.0

        def pct(q: float, lags: list[float] = lags) -> float | None:
            return round(lags[min(len(lags) - 1, int(q * len(lags)))], 4) if lags else None

        return {
            "components_scheduled": len(self.entries),
            "checks_run": self.checks_run,
            "checks_per_second": round(recent / window, 2) if window > 0 else 0.0,
            "in_flight": sum(1 for e in self.entries.values() if e.running),
            "scheduler_lag_p50_seconds": pct(0.5),
            "scheduler_lag_p99_seconds": pct(0.99),
            # Observation to commit, per write (its oldest result): the way to the database.
            "result_write_lag_p50_seconds": pct(0.5, write_lags),
            "result_write_lag_p99_seconds": pct(0.99, write_lags),
            "overruns": self.timetable.overruns,
            "buffered_results": self.writer.buffered,
            "dropped_results": self.dropped_results,
            "results_written": self.writer.results_written,
            "unrecorded_results": self.unrecorded_results + self.fenced_results,
            "flush_failures": self.flush_failures,
        }


class SchedulerLoop(LoopService):
    """Runs the scheduler under the lifespan: on start syncs declared components and opens the
    scheduler; each iteration refreshes the component list; on stop drains and flushes."""

    name = "monitoring-scheduler"

    def __init__(
        self,
        state: Core,
        scheduler: Scheduler,
        *,
        secret_box: SecretBox,
        strategies: StrategyRegistry,
        refresh_interval: float = 1.0,
    ):
        super().__init__(refresh_interval, metrics=state.metrics)
        self.state = state
        self.scheduler = scheduler
        self.secret_box = secret_box  # the declared components' credentials and recovery policies
        self.strategies = strategies

    async def on_start(self) -> None:
        from app.monitoring.declarative import sync_declared_components

        try:
            await sync_declared_components(self.state, self.secret_box, self.strategies)
        except Exception:  # a bad declaration must not keep the API components unwatched
            log.exception("syncing the components declared in the configuration failed")
        await self.scheduler.open()
        self.scheduler.start_background()

    async def run_once(self) -> None:
        await self.scheduler.refresh()

    async def on_stop(self) -> None:
        await self.scheduler.close()

    async def stop(self, timeout: float = SHUTDOWN_FLUSH_S + 10) -> None:
        # Long enough for close(): in-flight checks (<= 4 s) and the final flush with its retries.
        await super().stop(timeout)
