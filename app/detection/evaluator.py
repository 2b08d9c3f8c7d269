"""The rule evaluator: points arrive through an in-memory queue (filled after each ingest commit),
a loop drains it every second, runs each matching rule's evaluator on each point, and on a timer
fires ``for`` thresholds whose condition has held long enough without new points.

A firing inserts a ``metric_anomalies`` row and publishes ``AnomalyDetected`` in the same
transaction; the end of a firing stamps ``cleared_at`` and publishes ``AnomalyCleared``. Per-series
evaluator state (detector baselines, ``for`` clocks, trend windows) lives in ``rule_states`` so a
restart continues where it stopped: threshold/trend state is written every drain that touched it,
the larger anomaly-detector state at most every ``persist_every`` seconds and on shutdown.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from app.platform.loops import LoopService
from app.db.models import DetectionRule, MetricAnomaly, RuleState
from app.db.session import session_scope
from app.detection import absent
from app.detection.anomaly import AnomalyDetector, default_detector
from app.detection.threshold import ThresholdEvaluator
from app.detection.trend import TrendPredictor
from app.platform.events import AnomalyCleared, AnomalyDetected

if TYPE_CHECKING:
    from app.platform.runtime import Core
    from app.metrics.validation import Point

log = logging.getLogger("pipeline_guard.detection")

MAX_QUEUE = 200_000
STALE_SECONDS = 300.0  # a "for" clock is not advanced by the timer past this long without points


@dataclass(frozen=True)
class RuleSpec:
    id: int
    name: str
    component: str
    metric_name: str
    labels: dict[str, str]
    kind: str
    params: dict[str, Any]
    severity: str
    version: int

    def matches(self, labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.labels.items())

    def new_evaluator(self):
        p = self.params
        if self.kind == "threshold":
            return ThresholdEvaluator(p["operator"], p["value"], p.get("for_seconds") or 0.0)
        if self.kind == "trend":
            return TrendPredictor(window_seconds=p.get("window_seconds") or 3600.0)
        return default_detector()

    def restore(self, state: dict[str, Any]):
        if self.kind == "threshold":
            return ThresholdEvaluator.from_state(state)
        if self.kind == "trend":
            return TrendPredictor.from_state(state)
        return AnomalyDetector.from_state(state)


@dataclass
class SeriesState:
    rule: RuleSpec
    series_key: str
    labels: dict[str, str]
    evaluator: Any
    firing: bool = False
    anomaly_id: int | None = None
    last_ts: float | None = None
    last_value: float | None = None
    calm: int = 0
    dirty: bool = False
    persisted_at: float = field(default_factory=time.monotonic)

    def snapshot(self) -> dict[str, Any]:
        return {"eval": self.evaluator.to_state(), "calm": self.calm, "last_value": self.last_value}


class RuleEvaluator(LoopService):
    name = "rule-evaluator"

    def __init__(self, state: Core, interval: float = 1.0, persist_every: float = 30.0):
        super().__init__(interval, metrics=state.metrics)
        self.state = state
        self.persist_every = persist_every
        self.queue: deque[tuple[Point, ...]] = deque()
        self.queued = 0
        self.dropped = 0
        self._rules: dict[tuple[str, str], list[RuleSpec]] = {}
        self._rules_loaded = False
        self._absent: list[RuleSpec] = []  # ``absent`` rules, evaluated on the clock
        self._states: dict[tuple[int, str], SeriesState] = {}

    # --- hand-over from ingest (synchronous, after commit) -------------------------------------
    def wants_any(self, components: set[str]) -> bool:
        return not self._rules_loaded or any(c == comp for c, _ in self._rules for comp in components)

    def wants(self, component: str, metric_name: str) -> bool:
        """Whether points of this series may matter to a rule (everything until rules are loaded)."""
        return not self._rules_loaded or (component, metric_name) in self._rules

    def offer(self, points: list[Point]) -> None:
        wanted = tuple(p for p in points if (p.component, p.metric_name) in self._rules) if self._rules_loaded else tuple(points)
        if not wanted:
            return
        if self.queued + len(wanted) > MAX_QUEUE:
            self.dropped += len(wanted)
            log.warning("rule evaluator queue full: dropped %d points", len(wanted))
            return
        self.queue.append(wanted)
        self.queued += len(wanted)

    def rules_changed(self) -> None:
        self._rules_loaded = False

    # --- the loop ------------------------------------------------------------------------------
    async def on_start(self) -> None:
        from app.detection.declarative import sync_declared_rules

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
            if not self._rules_loaded:
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

    async def _load_rules(self, session) -> None:
        rules = (await session.execute(select(DetectionRule).where(DetectionRule.enabled.is_(True)))).scalars()
        index: dict[tuple[str, str], list[RuleSpec]] = {}
        for r in rules:
            spec = RuleSpec(r.id, r.name, r.component, r.metric_name, dict(r.labels or {}), r.kind,
                            dict(r.params or {}), r.severity, r.version)
            index.setdefault((r.component, r.metric_name), []).append(spec)
        live = {spec.id: spec for specs in index.values() for spec in specs}
        for key, st in list(self._states.items()):
            spec = live.get(key[0])
            if spec is None or spec.version != st.rule.version:
                del self._states[key]  # deleted/disabled or changed: reload (or restart) from the table
        self._rules = index
        self._absent = [spec for spec in live.values() if spec.kind == "absent"]
        self._rules_loaded = True
        # ``for`` clocks that were running when the process stopped: load them now so the timer
        # can fire them even if no new point arrives.
        thresholds = {spec.id: spec for spec in live.values() if spec.kind == "threshold"}
        if thresholds:
            rows = (await session.execute(select(RuleState).where(
                RuleState.rule_id.in_(thresholds), RuleState.firing.is_(False)))).scalars()
            for row in rows:
                spec = thresholds[row.rule_id]
                if (row.rule_id, row.series_key) in self._states or row.rule_version != spec.version:
                    continue
                if not (row.state.get("eval") or {}).get("since"):
                    continue
                self._states[(row.rule_id, row.series_key)] = SeriesState(
                    spec, row.series_key, row.labels, spec.restore(row.state["eval"]),
                    last_ts=row.last_ts.timestamp() if row.last_ts else None,
                    last_value=row.state.get("last_value"))

    async def _series_state(self, session, rule: RuleSpec, point: Point) -> SeriesState:
        key = (rule.id, point.series_key)
        st = self._states.get(key)
        if st is not None:
            return st
        row = await session.get(RuleState, key)
        if row is not None and row.rule_version == rule.version and row.state.get("eval"):
            try:
                st = SeriesState(rule, point.series_key, row.labels, rule.restore(row.state["eval"]),
                                 firing=row.firing, anomaly_id=row.anomaly_id,
                                 last_ts=row.last_ts.timestamp() if row.last_ts else None,
                                 last_value=row.state.get("last_value"), calm=row.state.get("calm", 0))
            except (KeyError, ValueError, TypeError):
                log.warning("rule %s: unreadable state for %s, starting afresh", rule.name, point.series_key)
        if st is None:
            st = SeriesState(rule, point.series_key, point.labels, rule.new_evaluator(), dirty=True)
            if row is not None and row.firing and row.anomaly_id:
                st.firing, st.anomaly_id = True, row.anomaly_id  # the rule changed mid-firing: clear it properly
        self._states[key] = st
        return st

    async def _evaluate(self, session, rule: RuleSpec, point: Point) -> None:
        st = await self._series_state(session, rule, point)
        ts = point.ts.timestamp()
        if st.last_ts is not None and ts < st.last_ts:
            return  # out of order: streaming evaluators only move forward
        p = rule.params
        if rule.kind == "threshold":
            ev = st.evaluator.evaluate(ts, point.value)
            firing = ev.firing
            evidence = {"value": ev.value, "threshold": ev.threshold, "operator": ev.operator,
                        "held_seconds": ev.held_seconds, "for_seconds": ev.for_seconds}
            message = (f"{rule.metric_name} {ev.operator} {ev.threshold:g} for {ev.held_seconds:.0f}s "
                       f"(value {ev.value:g})")
        elif rule.kind == "trend":
            ev = st.evaluator.evaluate(ts, point.value, p["value"], p["horizon_seconds"])
            firing = ev.firing
            evidence = {"value": ev.value, "threshold": ev.threshold, "seconds_to_cross": ev.seconds_to_cross,
                        "horizon_seconds": ev.horizon_seconds, "slope_per_second": ev.slope_per_second,
                        "r2": ev.r2, "points": ev.n}
            eta = ev.seconds_to_cross
            message = (f"{rule.metric_name} predicted to reach {ev.threshold:g} in ~{_human(eta)}"
                       if eta is not None else f"{rule.metric_name} trend")
        else:
            ev = st.evaluator.evaluate(ts, point.value)
            hit = ev.warmed_up and ev.score >= p.get("sensitivity", 0.5)
            st.calm = 0 if hit else st.calm + 1
            firing = hit or (st.firing and st.calm < p.get("clear_points", 10))
            evidence = {"value": ev.value, "score": ev.score, "baseline_median": _finite(ev.baseline_median),
                        "baseline_spread": _finite(ev.baseline_spread), "sensitivity": p.get("sensitivity", 0.5)}
            message = (f"{rule.metric_name} anomalous: {ev.value:g} (score {ev.score:.2f}, "
                       f"baseline {_finite(ev.baseline_median)})")
        st.last_ts, st.last_value, st.dirty = ts, point.value, True
        await self._transition(session, st, firing, message, evidence, point.ts)

    async def _timers(self, session) -> None:
        """``for`` thresholds: the condition holds and no point arrived since; fire when due."""
        now = time.time()
        for st in self._states.values():
            ev = st.evaluator
            if (st.rule.kind != "threshold" or st.firing or ev.since is None or st.last_ts is None
                    or now - st.last_ts > STALE_SECONDS or now - ev.since < ev.for_seconds):
                continue
            evidence = {"value": st.last_value, "threshold": ev.value, "operator": ev.op,
                        "held_seconds": now - ev.since, "for_seconds": ev.for_seconds, "by_timer": True}
            message = (f"{st.rule.metric_name} {ev.op} {ev.value:g} for {now - ev.since:.0f}s "
                       f"(value {st.last_value:g})")
            await self._transition(session, st, True, message, evidence, datetime.now(UTC))
        for rule in self._absent:
            await self._absent_tick(session, rule, now)

    # --- absent rules (freshness) --------------------------------------------------------------
    async def _absent_state(self, session, rule: RuleSpec) -> SeriesState:
        key = (rule.id, absent.SERIES_KEY)
        st = self._states.get(key)
        if st is not None:
            return st
        row = await session.get(RuleState, key)
        saved = (row.state or {}).get("eval") if row is not None else None
        if row is not None and row.rule_version == rule.version and saved and saved.get("kind") == "absent":
            st = SeriesState(rule, absent.SERIES_KEY, rule.labels, absent.AbsentEvaluator.from_state(saved),
                             firing=row.firing, anomaly_id=row.anomaly_id,
                             last_ts=row.last_ts.timestamp() if row.last_ts else None)
        else:
            ev = absent.AbsentEvaluator(rule.params["for_seconds"], await absent.rule_created_at(session, rule.id))
            st = SeriesState(rule, absent.SERIES_KEY, rule.labels, ev, dirty=True)
            if row is not None and row.firing and row.anomaly_id:
                st.firing, st.anomaly_id = True, row.anomaly_id  # the rule changed mid-firing: clear it properly
        self._states[key] = st
        return st

    async def _absent_arrival(self, session, rule: RuleSpec, point: Point) -> None:
        st = await self._absent_state(session, rule)
        st.evaluator.saw(point.ts.timestamp())
        st.last_ts, st.last_value, st.dirty = st.evaluator.last_seen, point.value, True
        await self._absent_decide(session, st, time.time())

    async def _absent_tick(self, session, rule: RuleSpec, now: float) -> None:
        st = await self._absent_state(session, rule)
        newest = await absent.newest_point(session, rule.component, rule.metric_name, rule.labels)
        if newest is not None and (st.evaluator.last_seen is None or newest > st.evaluator.last_seen):
            st.evaluator.saw(newest)
            st.last_ts, st.dirty = newest, True
        await self._absent_decide(session, st, now)

    async def _absent_decide(self, session, st: SeriesState, now: float) -> None:
        ev, rule = st.evaluator, st.rule
        firing = ev.firing(now)
        if firing != st.firing:
            await self._transition(session, st, firing, absent.describe(rule.metric_name, rule.component,
                                                                        ev.silent_for(now)),
                                   absent.evidence(ev, now), datetime.fromtimestamp(now, UTC))

    async def _transition(self, session, st: SeriesState, firing: bool, message: str,
                          evidence: dict[str, Any], at: datetime) -> None:
        if firing == st.firing:
            return
        rule = st.rule
        if firing:
            row = MetricAnomaly(rule_id=rule.id, component=rule.component, metric_name=rule.metric_name,
                                series_key=st.series_key, labels=st.labels, kind=rule.kind, severity=rule.severity,
                                message=message, evidence=evidence, started_at=at)
            session.add(row)
            await session.flush()
            st.anomaly_id = row.id
            await self.state.events.publish(AnomalyDetected(
                component=rule.component, metric_name=rule.metric_name, labels=st.labels, rule_id=rule.id,
                rule_kind=rule.kind, severity=rule.severity, message=message, evidence=evidence, at=at), session)
        else:
            if st.anomaly_id is not None:
                row = await session.get(MetricAnomaly, st.anomaly_id)
                if row is not None and row.cleared_at is None:
                    row.cleared_at = at
            st.anomaly_id = None
            await self.state.events.publish(AnomalyCleared(
                component=rule.component, metric_name=rule.metric_name, labels=st.labels, rule_id=rule.id,
                rule_kind=rule.kind, at=at), session)
        st.firing = firing
        await self._write_state(session, st)

    async def _persist(self, session, force: bool = False) -> None:
        now = time.monotonic()
        for st in self._states.values():
            if not st.dirty:
                continue
            if st.rule.kind == "anomaly" and not force and now - st.persisted_at < self.persist_every:
                continue
            await self._write_state(session, st)

    async def _write_state(self, session, st: SeriesState) -> None:
        row = await session.get(RuleState, (st.rule.id, st.series_key))
        if row is None:
            row = RuleState(rule_id=st.rule.id, series_key=st.series_key)
            session.add(row)
        row.labels = st.labels
        row.rule_version = st.rule.version
        row.state = st.snapshot()
        row.firing = st.firing
        row.anomaly_id = st.anomaly_id
        row.last_ts = datetime.fromtimestamp(st.last_ts, UTC) if st.last_ts is not None else None
        await session.flush()
        st.dirty = False
        st.persisted_at = time.monotonic()


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _human(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
