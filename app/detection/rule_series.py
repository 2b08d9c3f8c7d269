"""What the rule evaluator keeps per (rule, series), and how it is read from and written to
``rule_states`` so that a restart continues where it stopped (detector baselines, ``for`` clocks,
trend windows, absent-rule clocks, whether a firing is open). The evaluator's loop only caches
these objects; the table round trip lives here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import RuleState
from app.detection import absent
from app.detection.anomaly import AnomalyDetector, default_detector
from app.detection.threshold import ThresholdEvaluator
from app.detection.trend import TrendPredictor

if TYPE_CHECKING:
    from sqlalchemy.engine import CursorResult

log = logging.getLogger("pipeline_guard.detection")


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

    def new_evaluator(self) -> ThresholdEvaluator | TrendPredictor | AnomalyDetector:
        p = self.params
        if self.kind == "threshold":
            return ThresholdEvaluator(p["operator"], p["value"], p.get("for_seconds") or 0.0)
        if self.kind == "trend":
            return TrendPredictor(window_seconds=p.get("window_seconds") or 3600.0)
        return default_detector()

    def restore(self, state: dict[str, Any]) -> ThresholdEvaluator | TrendPredictor | AnomalyDetector:
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
    evaluator: Any  # the rule kind's evaluator (ThresholdEvaluator, TrendPredictor, AnomalyDetector, absent)
    firing: bool = False
    anomaly_id: int | None = None
    last_ts: float | None = None
    last_value: float | None = None
    calm: int = 0
    dirty: bool = False
    persisted_at: float = field(default_factory=time.monotonic)

    def snapshot(self) -> dict[str, Any]:
        return {"eval": self.evaluator.to_state(), "calm": self.calm, "last_value": self.last_value}


def _seconds(at: datetime | None) -> float | None:
    return at.timestamp() if at else None


async def running_clocks(
    session: AsyncSession, thresholds: dict[int, RuleSpec], known: Iterable[tuple[int, str]]
) -> list[SeriesState]:
    """Threshold ``for`` clocks that were running when the process stopped, so the timer can fire
    them even if no new point arrives (``known`` series are already in memory)."""
    if not thresholds:
        return []
    skip = set(known)
    found = []
    rows = (
        await session.execute(
            select(RuleState).where(RuleState.rule_id.in_(thresholds), RuleState.firing.is_(False))
        )
    ).scalars()
    for row in rows:
        spec = thresholds[row.rule_id]
        if (row.rule_id, row.series_key) in skip or row.rule_version != spec.version:
            continue
        if not (row.state.get("eval") or {}).get("since"):
            continue
        found.append(
            SeriesState(
                spec,
                row.series_key,
                row.labels,
                spec.restore(row.state["eval"]),
                last_ts=_seconds(row.last_ts),
                last_value=row.state.get("last_value"),
            )
        )
    return found


async def load_series(
    session: AsyncSession, rule: RuleSpec, series_key: str, labels: dict[str, str]
) -> SeriesState:
    """The stored state of a point's series, or a fresh one (a new series, a changed rule, or a
    state that cannot be read)."""
    row = await session.get(RuleState, (rule.id, series_key))
    st = None
    if row is not None and row.rule_version == rule.version and row.state.get("eval"):
        try:
            st = SeriesState(
                rule,
                series_key,
                row.labels,
                rule.restore(row.state["eval"]),
                firing=row.firing,
                anomaly_id=row.anomaly_id,
                last_ts=_seconds(row.last_ts),
                last_value=row.state.get("last_value"),
                calm=row.state.get("calm", 0),
            )
        except (KeyError, ValueError, TypeError):
            log.warning("rule %s: unreadable state for %s, starting afresh", rule.name, series_key)
    if st is None:
        st = SeriesState(rule, series_key, labels, rule.new_evaluator(), dirty=True)
        if row is not None and row.firing and row.anomaly_id:
            st.firing, st.anomaly_id = True, row.anomaly_id  # the rule changed mid-firing: clear it properly
    return st


async def load_absent(session: AsyncSession, rule: RuleSpec) -> SeriesState:
    """The stored state of an ``absent`` rule (one per rule), or a fresh one."""
    row = await session.get(RuleState, (rule.id, absent.SERIES_KEY))
    saved = (row.state or {}).get("eval") if row is not None else None
    if row is not None and row.rule_version == rule.version and saved and saved.get("kind") == "absent":
        return SeriesState(
            rule,
            absent.SERIES_KEY,
            rule.labels,
            absent.AbsentEvaluator.from_state(saved),
            firing=row.firing,
            anomaly_id=row.anomaly_id,
            last_ts=_seconds(row.last_ts),
        )
    ev = absent.AbsentEvaluator(rule.params["for_seconds"], await absent.rule_created_at(session, rule.id))
    st = SeriesState(rule, absent.SERIES_KEY, rule.labels, ev, dirty=True)
    if row is not None and row.firing and row.anomaly_id:
        st.firing, st.anomaly_id = True, row.anomaly_id  # the rule changed mid-firing: clear it properly
    return st


async def claim_transition(session: AsyncSession, st: SeriesState, firing: bool) -> bool:
    """Whether this transaction records the series' move to ``firing``. Several replicas may judge
    one series (``absent`` rules tick in every replica; points of one series may reach several): the
    stored row decides, by a compare-and-set on its ``firing`` column (Postgres makes a concurrent
    one wait for this commit, then finds nothing to change). A replica that loses adopts the stored
    state (``firing``, ``anomaly_id``) instead of recording a second episode."""
    key = (st.rule.id, st.series_key)
    flipped = await session.execute(
        update(RuleState)
        .where(
            RuleState.rule_id == st.rule.id,
            RuleState.series_key == st.series_key,
            RuleState.firing.is_(not firing),
        )
        .values(firing=firing)
        .execution_options(synchronize_session=False)
    )
    if cast("CursorResult[Any]", flipped).rowcount:  # an UPDATE's result is a CursorResult
        return True
    row = await session.get(RuleState, key, populate_existing=True)
    if row is None:  # the series' first transition: whoever inserts its row records it
        try:
            async with session.begin_nested():
                session.add(
                    RuleState(
                        rule_id=st.rule.id,
                        series_key=st.series_key,
                        labels=st.labels,
                        rule_version=st.rule.version,
                        state={},
                        firing=firing,
                    )
                )
            return True
        except IntegrityError:
            row = await session.get(RuleState, key, populate_existing=True)
    if row is not None:
        st.anomaly_id = row.anomaly_id
    st.firing = firing
    return False


async def write_series(session: AsyncSession, st: SeriesState) -> None:
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
