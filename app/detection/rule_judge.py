"""What one point (or the clock) means to one rule: whether it fires, and the message and evidence a
``metric_anomalies`` row keeps to explain it. No I/O: the evaluator's loop loads the series state,
asks here, and records the transition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from app.detection.rule_series import SeriesState

STALE_SECONDS = 300.0  # a "for" clock is not advanced by the timer past this long without points


@dataclass(frozen=True)
class Verdict:
    firing: bool
    message: str
    evidence: dict[str, Any]


def judge_point(st: SeriesState, ts: float, value: float) -> Verdict:
    """Feed one point (epoch seconds, value) to the series' evaluator and read its verdict."""
    rule, p = st.rule, st.rule.params
    if rule.kind == "threshold":
        ev = st.evaluator.evaluate(ts, value)
        evidence = {
            "value": ev.value,
            "threshold": ev.threshold,
            "operator": ev.operator,
            "held_seconds": ev.held_seconds,
            "for_seconds": ev.for_seconds,
        }
        message = (
            f"{rule.metric_name} {ev.operator} {ev.threshold:g} for {ev.held_seconds:.0f}s "
            f"(value {ev.value:g})"
        )
        return Verdict(ev.firing, message, evidence)
    if rule.kind == "trend":
        ev = st.evaluator.evaluate(ts, value, p["value"], p["horizon_seconds"])
        evidence = {
            "value": ev.value,
            "threshold": ev.threshold,
            "seconds_to_cross": ev.seconds_to_cross,
            "horizon_seconds": ev.horizon_seconds,
            "slope_per_second": ev.slope_per_second,
            "r2": ev.r2,
            "points": ev.n,
        }
        eta = ev.seconds_to_cross
        message = (
            f"{rule.metric_name} predicted to reach {ev.threshold:g} in ~{_human(eta)}"
            if eta is not None
            else f"{rule.metric_name} trend"
        )
        return Verdict(ev.firing, message, evidence)
    ev = st.evaluator.evaluate(ts, value)
    hit = ev.warmed_up and ev.score >= p.get("sensitivity", 0.5)
    st.calm = 0 if hit else st.calm + 1
    firing = hit or (st.firing and st.calm < p.get("clear_points", 10))
    evidence = {
        "value": ev.value,
        "score": ev.score,
        "baseline_median": _finite(ev.baseline_median),
        "baseline_spread": _finite(ev.baseline_spread),
        "sensitivity": p.get("sensitivity", 0.5),
    }
    message = (
        f"{rule.metric_name} anomalous: {ev.value:g} (score {ev.score:.2f}, "
        f"baseline {_finite(ev.baseline_median)})"
    )
    return Verdict(firing, message, evidence)


def timer_due(st: SeriesState, now: float) -> Verdict | None:
    """A ``for`` threshold whose condition has held long enough with no point since: it fires now
    (the last value stands for at most ``STALE_SECONDS``). None when nothing is due."""
    ev = st.evaluator
    if (
        st.rule.kind != "threshold"
        or st.firing
        or ev.since is None
        or st.last_ts is None
        or now - st.last_ts > STALE_SECONDS
        or now - ev.since < ev.for_seconds
    ):
        return None
    evidence = {
        "value": st.last_value,
        "threshold": ev.value,
        "operator": ev.op,
        "held_seconds": now - ev.since,
        "for_seconds": ev.for_seconds,
        "by_timer": True,
    }
    message = (
        f"{st.rule.metric_name} {ev.op} {ev.value:g} for {now - ev.since:.0f}s (value {st.last_value:g})"
    )
    return Verdict(True, message, evidence)


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
