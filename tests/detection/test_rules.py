import random

import pytest

from app.detection.threshold import ThresholdEvaluator
from app.detection.trend import TrendPredictor


def test_threshold_fires_only_after_holding_for_duration_and_resets():
    ev = ThresholdEvaluator("gt", 90.0, for_seconds=60)
    assert not ev.evaluate(0, 95).firing
    assert not ev.evaluate(30, 96).firing
    r = ev.evaluate(60, 97)
    assert r.firing and r.held_seconds == 60 and r.since == 0
    # stops holding: clock resets
    assert not ev.evaluate(70, 80).firing
    assert not ev.evaluate(80, 95).firing
    assert not ev.evaluate(130, 95).firing
    assert ev.evaluate(140, 95).firing


def test_threshold_without_for_and_all_operators():
    cases = {"gt": (2, 1), "ge": (1, 0), "lt": (0, 1), "le": (1, 2), "eq": (1, 2), "ne": (2, 1)}
    for op, (fires, quiet) in cases.items():
        ev = ThresholdEvaluator(op, 1.0)
        assert ev.evaluate(0, fires).firing, op
        assert not ev.evaluate(1, quiet).firing, op
    with pytest.raises(ValueError):
        ThresholdEvaluator("gte", 1.0)


def test_threshold_state_round_trip():
    ev = ThresholdEvaluator("ge", 5, for_seconds=10)
    ev.evaluate(100, 6)
    restored = ThresholdEvaluator.from_state(ev.to_state())
    assert restored.evaluate(110, 7).firing


def test_trend_fires_on_ramp():
    rng = random.Random(1)
    tp = TrendPredictor(window_seconds=3600, min_points=10)
    result = None
    for i in range(60):  # disk filling 0.5 %/min with noise
        result = tp.evaluate(i * 60, 50 + 0.5 * i + rng.gauss(0, 0.5), threshold=95, horizon_seconds=7200)
    assert result.firing
    # at minute 59 the fill is ~79.5 %: ~31 more minutes to 95 %
    assert 1500 < result.seconds_to_cross < 2300
    assert tp.predict(0) == pytest.approx(79.5, abs=1.5)


def test_trend_does_not_fire_on_stationary_noise():
    for seed in range(20):
        rng = random.Random(seed)
        tp = TrendPredictor(window_seconds=3600, min_points=10)
        for i in range(120):
            r = tp.evaluate(i * 30, 50 + rng.gauss(0, 5), threshold=95, horizon_seconds=7200)
            assert not r.firing, (seed, i, r)


def test_trend_needs_minimum_points_and_window_is_bounded():
    tp = TrendPredictor(window_seconds=100, max_points=50, min_points=10)
    for i in range(5):
        tp.add(i, i)
    assert tp.predict_time_to_cross(100) is None
    for i in range(5, 500):
        tp.add(i, i)
    assert len(tp.points) <= 50
    assert tp.predict_time_to_cross(600) == pytest.approx(101, rel=1e-6)
    assert tp.predict_time_to_cross(0) is None  # moving away
    restored = TrendPredictor.from_state(tp.to_state())
    assert restored.predict_time_to_cross(600) == tp.predict_time_to_cross(600)
