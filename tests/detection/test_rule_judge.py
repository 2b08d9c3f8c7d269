"""What a point, or the clock, means to a rule (``rule_judge``): pure, so judged without a database."""

from app.detection.rule_judge import STALE_SECONDS, judge_point, timer_due
from app.detection.rule_series import RuleSpec, SeriesState


def _series(kind: str, params: dict) -> SeriesState:
    rule = RuleSpec(1, "r", "etl", "lag", {}, kind, params, "warning", 1)
    return SeriesState(rule, "", {}, rule.new_evaluator())


def test_a_threshold_point_explains_itself():
    st = _series("threshold", {"operator": "gt", "value": 10.0, "for_seconds": 0})
    quiet = judge_point(st, 100.0, 5.0)
    assert not quiet.firing
    loud = judge_point(st, 101.0, 12.5)
    assert loud.firing and loud.evidence["value"] == 12.5 and loud.evidence["operator"] == "gt"
    assert loud.message == "lag gt 10 for 0s (value 12.5)"


def test_the_timer_fires_a_held_for_clock_only_while_points_are_fresh():
    st = _series("threshold", {"operator": "gt", "value": 10.0, "for_seconds": 30})
    assert not judge_point(st, 1000.0, 11.0).firing  # the clock starts
    st.last_ts, st.last_value = 1000.0, 11.0
    assert timer_due(st, 1020.0) is None  # held 20 s of 30
    due = timer_due(st, 1031.0)
    assert due is not None and due.firing and due.evidence["by_timer"] is True
    assert due.message == "lag gt 10 for 31s (value 11)"
    assert timer_due(st, 1000.0 + STALE_SECONDS + 1) is None  # the last value no longer stands
    st.firing = True
    assert timer_due(st, 1031.0) is None  # already firing


def test_a_trend_with_no_crossing_in_sight_has_a_plain_message():
    st = _series("trend", {"value": 100.0, "horizon_seconds": 60.0, "window_seconds": 600.0})
    verdict = judge_point(st, 0.0, 1.0)
    assert not verdict.firing and verdict.message == "lag trend"
