"""The rule evaluator: points arrive through an in-memory queue (filled after each ingest commit),
a loop drains it every second, runs each matching rule's evaluator on each point, and on a timer
fires ``for`` thresholds whose condition has held long enough without new points.

A firing inserts a ``metric_anomalies`` row and publishes ``AnomalyDetected`` in the same
transaction; the end of a firing stamps ``cleared_at`` and publishes ``AnomalyCleared``. Per-series
evaluator state (detector baselines, ``for`` clocks, trend windows) lives in ``rule_states`` so a
restart continues where it stopped: threshold/trend state is written every drain that touched it,
the larger anomaly-detector state at most every ``persist_every`` seconds and on shutdown.

This module is the loop and its cache of series states; what a point means to a rule is in
``rule_judge``, and how a series state is read from and written to ``rule_states`` in ``rule_series``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.change_signature import change_signature
from app.db.models import DetectionRule, MetricAnomaly
from app.db.session import session_scope
from app.detection import absent
from app.detection.rule_judge import judge_point, timer_due
from app.detection.rule_series import (
    RuleSpec,
    SeriesState,
    claim_transition,
    load_absent,
    load_series,
    running_clocks,
    write_series,
)
from app.monitoring.hearing import Hearing
from app.platform.events import AnomalyCleared, AnomalyDetected
from app.platform.loops import LoopService

if TYPE_CHECKING:
    from app.metrics.validation import Point
    from app.platform.core import Core

log = logging.getLogger("pipeline_guard.detection")

MAX_QUEUE = 200_000
RULES_FULL_RELOAD_S = 30.0


class RuleEvaluator(LoopService):
    name = "rule-evaluator"

    def __init__(
        self,
        state: Core,
        interval: float = 1.0,
        persist_every: float = 30.0,
        hearing: Hearing | None = None,
    ):
        """``hearing``: the process's (shared with the heartbeat checks): rule timers judge as of the
        instant up to which the points sent here are stored."""
        super().__init__(interval, metrics=state.metrics)
        self.state = state
        self.hearing = hearing or Hearing()
        self._hearing_started = False
        self.persist_every = persist_every
        self.queue: deque[tuple[Point, ...]] = deque()
        self.queued = 0
        self.dropped = 0
        self._rules: dict[tuple[str, str], list[RuleSpec]] = {}
        self._rules_loaded = False
        # The series (component, metric name) whose points ingest hands over: those the loaded rules
        # watch plus those of rules changed here since. None until known (every point is handed over).
        self._watched: set[tuple[str, str]] | None = None
        self._changed: set[tuple[str, str]] = set()  # series of rules changed here since the last load
        self._reload = False  # a rule changed here: reload on the next pass
        self._absent: list[RuleSpec] = []  # ``absent`` rules, evaluated on the clock
        self._states: dict[tuple[int, str], SeriesState] = {}
        self._rules_signature: tuple | None = None  # the rules table's aggregate when they were loaded
        self._rules_reload_at = 0.0

    # --- hand-over from ingest (synchronous, after commit) -------------------------------------
    def wants_any(self, components: set[str]) -> bool:
        watched = self._watched
        return watched is None or any(c in components for c, _ in watched)

    def wants(self, component: str, metric_name: str) -> bool:
        """Whether points of this series may matter to a rule (every series until that is known)."""
        watched = self._watched
        return watched is None or (component, metric_name) in watched

    def offer(self, points: list[Point]) -> None:
        watched = self._watched
        wanted = (
            tuple(points)
            if watched is None
            else tuple(p for p in points if (p.component, p.metric_name) in watched)
        )
        if not wanted:
            return
        if self.queued + len(wanted) > MAX_QUEUE:
            self.dropped += len(wanted)
            log.warning("rule evaluator queue full: dropped %d points", len(wanted))
            return
        self.queue.append(wanted)
        self.queued += len(wanted)

    async def learn_watched(self, session: AsyncSession) -> None:
        """Which series the rules watch, read on the caller's transaction (ingest, before the loop's
        first load): points of other series are not queued meanwhile, so a burst right after start
        cannot fill the queue and shed the points a rule watches."""
        if self._watched is not None:
            return
        keys = await session.execute(
            select(DetectionRule.component, DetectionRule.metric_name)
            .where(DetectionRule.enabled.is_(True))
            .distinct()
        )
        if self._watched is None:  # the loop may have loaded the rules meanwhile
            self._watched = {(c, m) for c, m in keys} | self._changed

    def rules_changed(self, *series: tuple[str, str]) -> None:
        """A rule changed through this replica (told after its commit): reloaded on the next pass,
        and the points of ``series`` (the changed rules' component and metric name) are handed over
        from now on, so a new rule judges every point ingested after it was created here."""
        self._reload = True
        self._changed.update(series)
        if self._watched is not None:
            self._watched.update(series)

    # --- the loop ------------------------------------------------------------------------------
    async def on_start(self) -> None:
        from app.detection.declarative import sync_declared_rules

        if not self._hearing_started:  # a start that failed is retried: one watcher user, not one per try
            self._hearing_started = True
            self.hearing.start()
        try:
            report = await sync_declared_rules(self.state, self)
        except Exception:  # a bad declaration (or a replica racing on the same name) must not stop detection
            log.exception("syncing the rules declared in the configuration failed")
        else:
            if any(report.values()):
                log.info("declared rules synced: %s", {k: v for k, v in report.items() if v})

    async def on_stop(self) -> None:
        try:
            await self.run_once(final=True)
        except Exception:
            log.exception("rule evaluator: final flush failed")
        if self._hearing_started:
            self._hearing_started = False
            await self.hearing.stop()

    async def run_once(self, final: bool = False) -> None:
        try:
            await self._drain(final)
        except BaseException:
            # The transaction rolled back: in-memory state may be ahead of the table (a firing
            # not recorded). Forget it and reload from ``rule_states`` on the next points.
            self._states.clear()
            raise

    async def _drain(self, final: bool) -> None:
        async with session_scope(self.state.sessionmaker) as session:
            if self._reload or not self._rules_loaded or await self._rules_moved(session):
                await self._load_rules(session)
            while self.queue:
                batch = self.queue.popleft()
                self.queued -= len(batch)
                for point in batch:
                    for rule in self._rules.get((point.component, point.metric_name), ()):
                        if not rule.matches(point.labels):
                            continue
                        if rule.kind == "absent":
                            await self._absent_arrival(session, rule, point)
                        else:
                            await self._evaluate(session, rule, point)
            await self._timers(session)
            await self._persist(session, force=final)

    async def _rules_moved(self, session: AsyncSession) -> bool:
        """Whether the rules changed since they were loaded, wherever the change was made (this
        replica's API tells the evaluator at once; another replica's, or the configuration file's sync
        on another replica, only shows in the table): one aggregate row, compared with the last one,
        and a full reload every ``RULES_FULL_RELOAD_S`` as a safety net."""
        return (
            time.monotonic() >= self._rules_reload_at
            or await change_signature(session, DetectionRule) != self._rules_signature
        )

    async def _load_rules(self, session: AsyncSession) -> None:
        # A change told while this load runs is kept (and reloads again): it may not be in what is read.
        self._reload = False
        self._changed.clear()
        self._rules_signature = await change_signature(session, DetectionRule)
        self._rules_reload_at = time.monotonic() + RULES_FULL_RELOAD_S
        rules = (
            await session.execute(select(DetectionRule).where(DetectionRule.enabled.is_(True)))
        ).scalars()
        index: dict[tuple[str, str], list[RuleSpec]] = {}
        for r in rules:
            spec = RuleSpec(
                r.id,
                r.name,
                r.component,
                r.metric_name,
                dict(r.labels or {}),
                r.kind,
                dict(r.params or {}),
                r.severity,
                r.version,
            )
            index.setdefault((r.component, r.metric_name), []).append(spec)
        live = {spec.id: spec for specs in index.values() for spec in specs}
        for key, st in list(self._states.items()):
            current = live.get(key[0])
            if current is None or current.version != st.rule.version:
                del self._states[key]  # deleted/disabled or changed: reload (or restart) from the table
        self._rules = index
        self._absent = [spec for spec in live.values() if spec.kind == "absent"]
        self._rules_loaded = True
        self._watched = set(index) | self._changed
        # ``for`` clocks that were running when the process stopped: load them now so the timer
        # can fire them even if no new point arrives.
        thresholds = {spec.id: spec for spec in live.values() if spec.kind == "threshold"}
        for st in await running_clocks(session, thresholds, self._states):
            self._states[(st.rule.id, st.series_key)] = st

    async def _series_state(self, session: AsyncSession, rule: RuleSpec, point: Point) -> SeriesState:
        key = (rule.id, point.series_key)
        st = self._states.get(key)
        if st is None:
            st = self._states[key] = await load_series(session, rule, point.series_key, point.labels)
        return st

    async def _evaluate(self, session: AsyncSession, rule: RuleSpec, point: Point) -> None:
        st = await self._series_state(session, rule, point)
        ts = point.ts.timestamp()
        if st.last_ts is not None and ts < st.last_ts:
            return  # out of order: streaming evaluators only move forward
        verdict = judge_point(st, ts, point.value)
        st.last_ts, st.last_value, st.dirty = ts, point.value, True
        await self._transition(session, st, verdict.firing, verdict.message, verdict.evidence, point.ts)

    async def _timers(self, session: AsyncSession) -> None:
        """``for`` thresholds: the condition holds and no point arrived since; fire when due. Both
        these and ``absent`` rules judge as of the instant up to which this process has stored the
        points sent to it (`Hearing`): a point waiting in the socket while the guard could not run,
        or still being stored, is not taken for a silence."""
        wall = datetime.now(UTC)
        for st in self._states.values():
            verdict = timer_due(st, self._judged_at(wall, st.rule.component))
            if verdict is not None:
                await self._transition(session, st, True, verdict.message, verdict.evidence, wall)
        for rule in self._absent:
            await self._absent_tick(session, rule, self._judged_at(wall, rule.component))

    def _judged_at(self, wall: datetime, component: str) -> float:
        return self.hearing.heard_until(wall, component).timestamp()

    # --- absent rules (freshness) --------------------------------------------------------------
    async def _absent_state(self, session: AsyncSession, rule: RuleSpec) -> SeriesState:
        key = (rule.id, absent.SERIES_KEY)
        st = self._states.get(key)
        if st is None:
            st = self._states[key] = await load_absent(session, rule)
        return st

    async def _absent_arrival(self, session: AsyncSession, rule: RuleSpec, point: Point) -> None:
        st = await self._absent_state(session, rule)
        st.evaluator.saw(point.ts.timestamp())
        st.last_ts, st.last_value, st.dirty = st.evaluator.last_seen, point.value, True
        await self._absent_decide(session, st, self._judged_at(datetime.now(UTC), rule.component))

    async def _absent_tick(self, session: AsyncSession, rule: RuleSpec, now: float) -> None:
        st = await self._absent_state(session, rule)
        newest = await absent.newest_point(session, rule.component, rule.metric_name, rule.labels)
        if newest is not None and (st.evaluator.last_seen is None or newest > st.evaluator.last_seen):
            st.evaluator.saw(newest)
            st.last_ts, st.dirty = newest, True
        await self._absent_decide(session, st, now)

    async def _absent_decide(self, session: AsyncSession, st: SeriesState, now: float) -> None:
        ev, rule = st.evaluator, st.rule
        firing = ev.firing(now)

        if firing != st.firing:
            await self._transition(
                session,
                st,
                firing,
                absent.describe(rule.metric_name, rule.component, ev.silent_for(now)),
                absent.evidence(ev, now),
                datetime.fromtimestamp(now, UTC),
            )

    async def _transition(
        self,
        session: AsyncSession,
        st: SeriesState,
        firing: bool,
        message: str,
        evidence: dict[str, Any],
        at: datetime,
    ) -> None:
        if firing == st.firing:
            return
        if not await claim_transition(session, st, firing):
            return  # another replica recorded this move; st now holds the stored state
        rule = st.rule
        if firing:
            row = MetricAnomaly(
                rule_id=rule.id,
                component=rule.component,
                metric_name=rule.metric_name,
                series_key=st.series_key,
                labels=st.labels,
                kind=rule.kind,
                severity=rule.severity,
                message=message,
                evidence=evidence,
                started_at=at,
            )
            session.add(row)
            await session.flush()
            st.anomaly_id = row.id
            await self.state.events.publish(
                AnomalyDetected(
                    component=rule.component,
                    metric_name=rule.metric_name,
                    labels=st.labels,
                    rule_id=rule.id,
                    rule_kind=rule.kind,
                    severity=rule.severity,
                    message=message,
                    evidence=evidence,
                    at=at,
                ),
                session,
            )
        else:
            if st.anomaly_id is not None:
                opened = await session.get(MetricAnomaly, st.anomaly_id)
                if opened is not None and opened.cleared_at is None:
                    opened.cleared_at = at
            st.anomaly_id = None
            await self.state.events.publish(
                AnomalyCleared(
                    component=rule.component,
                    metric_name=rule.metric_name,
                    labels=st.labels,
                    rule_id=rule.id,
                    rule_kind=rule.kind,
                    at=at,
                ),
                session,
            )
        st.firing = firing
        await write_series(session, st)

    async def _persist(self, session: AsyncSession, force: bool = False) -> None:
        now = time.monotonic()
        for st in self._states.values():
            if not st.dirty:
                continue
            if st.rule.kind == "anomaly" and not force and now - st.persisted_at < self.persist_every:
                continue
            await write_series(session, st)
