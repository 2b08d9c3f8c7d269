import csv
import json
import math
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.detection.anomaly import AnomalyDetector, default_detector
from app.detection.cli_stream import detect_csv

NAB_DIR = Path(__file__).resolve().parents[3] / "shared" / "nab"


def noisy_series(n=1500, seed=0, spike_at=None):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        v = 10 + 2 * math.sin(i / 20) + rng.gauss(0, 0.5)
        if spike_at is not None and i == spike_at:
            v += 30
        out.append((1_600_000_000 + 300 * i, v))
    return out


def run(det, series):
    return [det.score(t, v) for t, v in series]


def test_scores_bounded():
    rng = random.Random(5)
    det = default_detector()
    for i in range(3000):
        v = rng.choice([rng.gauss(0, 1), rng.expovariate(0.01), 0.0, -1e6 * rng.random()])
        s = det.score(float(i), v)
        assert 0.0 <= s <= 1.0


def test_no_look_ahead():
    series = noisy_series(1200, spike_at=900)
    full = run(default_detector(), series)
    prefix = run(default_detector(), series[:950])
    assert full[:950] == prefix


def test_state_round_trip_continues_identically():
    series = noisy_series(1500, seed=2, spike_at=1300)
    reference = run(default_detector(), series)
    det = default_detector()
    run(det, series[:1000])
    state = json.loads(json.dumps(det.to_state()))  # must be JSON-able
    restored = AnomalyDetector.from_state(state)
    assert run(restored, series[1000:]) == reference[1000:]
    assert restored.count == 1500 and restored.warmed_up


def test_warm_up_never_fires():
    det = default_detector()
    rng = random.Random(9)
    for i in range(det.min_history):
        ev = det.evaluate(float(i), rng.choice([0.0, 1e9, -5.0, 42.0]))
        assert ev.score == 0.0 and not ev.firing and not ev.warmed_up


def test_spike_scores_high_and_stationary_noise_low():
    series = noisy_series(1500, seed=4, spike_at=1200)
    det = default_detector()
    scores = run(det, series)
    assert max(range(len(scores)), key=scores.__getitem__) == 1200
    assert scores[1200] >= 0.5
    assert sum(s >= 0.5 for s in scores[200:1200]) <= 2
    b = det.baseline()
    assert 8 < b["median"] < 12 and b["spread"] > 0 and b["count"] == 1500


def test_accepts_datetime_timestamps():
    det = default_detector()
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    assert det.score(t0, 1.0) == 0.0
    assert det.last_timestamp == t0.timestamp()


def _nab_file(name):
    path = NAB_DIR / "data" / name
    if not path.exists():
        pytest.skip("shared NAB data not present")
    labels = json.loads((NAB_DIR / "labels" / "combined_windows.json").read_text())
    return path, labels[name]


@pytest.mark.parametrize(
    "name",
    ["realAWSCloudwatch/ec2_cpu_utilization_825cc2.csv", "realAWSCloudwatch/rds_cpu_utilization_cc0c53.csv"],
)
def test_nab_max_score_inside_labelled_window(tmp_path, name):
    path, windows = _nab_file(name)
    out = tmp_path / "scored.csv"
    rows = detect_csv(path, out)
    with out.open() as fh:
        scored = list(csv.DictReader(fh))
    assert len(scored) == rows > 1000
    probation = int(0.15 * rows)
    best = max(scored[probation:], key=lambda r: float(r["anomaly_score"]))
    ts = datetime.fromisoformat(best["timestamp"])
    assert any(datetime.fromisoformat(a) <= ts <= datetime.fromisoformat(b) for a, b in windows)
    assert all(0.0 <= float(r["anomaly_score"]) <= 1.0 for r in scored)


# --- seasonality, level shifts, cadence, state versions ---------------------------------------------

FIXTURES = Path(__file__).resolve().parent / "fixtures"
T0 = 1_600_000_000


def daily_series(days=10, seed=0, drop=0.0, break_at=None):
    """5-minute points, a daily cycle of +-20 around 50 with noise 1; ``drop`` of the points
    missing at random; from index ``break_at`` on the cycle stops (the value stays at 50)."""
    rng = random.Random(seed)
    out = []
    for i in range(288 * days):
        if rng.random() < drop:
            continue
        v = 50 + 20 * math.sin(2 * math.pi * (i % 288) / 288) + rng.gauss(0, 1)
        if break_at is not None and i >= break_at:
            v = 50 + rng.gauss(0, 1)
        out.append((T0 + 300 * i, v))
    return out


@pytest.mark.parametrize("drop", [0.0, 0.1])
def test_daily_cycle_is_learned_not_alarmed(drop):
    """The daily swing (40x the noise) is routine after a couple of days, also when points are
    missing at random (the seasonal reference is found by time, not by counting points)."""
    for seed in range(3):
        det = default_detector()
        alarms = [
            t
            for t, v in daily_series(seed=seed, drop=drop)
            if det.score(t, v) >= det.fire_level and t >= T0 + 300 * 576
        ]
        assert len(alarms) <= 1, (seed, alarms)
        assert det.season_lag() == 288


def test_break_of_the_daily_cycle_alarms():
    # day 7 at its peak (phase 1/4): the cycle stops and the value drops from ~70 to ~50
    brk = 7 * 288 + 72
    det = default_detector()
    hits = [(t - T0) // 300 for t, v in daily_series(break_at=brk) if det.score(t, v) >= det.fire_level]
    assert any(brk <= i <= brk + 3 for i in hits), hits


def test_level_shift_alarms_once_then_settles():
    for seed in range(3):
        rng = random.Random(seed)
        det = default_detector()
        scores = [
            det.score(T0 + 60 * i, 20 + rng.gauss(0, 1) + (10 if i >= 2000 else 0)) for i in range(5000)
        ]
        assert scores[2000] >= 0.8
        # the new level is the new normal: no alarm for the rest of the series
        assert max(scores[2001:]) < det.fire_level, seed


def test_cadence_is_the_usual_gap_not_the_smallest():
    det = default_detector()
    t = float(T0)
    for i in range(600):
        t += {50: 60.0, 51: 0.0, 300: 1800.0}.get(i, 300.0)  # one short gap, a duplicate, an outage
        det.score(t, 1.0)
    assert det.season_lag() == 288


def test_state_round_trip_with_gaps_continues_identically():
    series = daily_series(days=6, seed=3, drop=0.05)
    reference = run(default_detector(), series)
    det = default_detector()
    cut = 1000
    run(det, series[:cut])
    restored = AnomalyDetector.from_state(json.loads(json.dumps(det.to_state())))
    assert run(restored, series[cut:]) == reference[cut:]
    assert restored.to_state()["version"] == AnomalyDetector.VERSION


def test_version_2_state_is_migrated():
    """A state persisted by the previous detector (three views, no timestamps; 1500 points of a
    daily cycle at 5 minutes) loads, keeps its warm-up, and goes on detecting."""
    state = json.loads((FIXTURES / "anomaly_state_v2.json").read_text())
    assert state["version"] == 2
    det = AnomalyDetector.from_state(state)
    assert det.count == 1500 and det.warmed_up
    assert det.last_timestamp == state["last_timestamp"] and det.season_lag() == 288
    base = det.baseline()
    assert 8 < base["median"] < 12 and base["spread"] > 0
    rng = random.Random(1)
    scores = []
    for i in range(1500, 2500):
        v = 10 + 2 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 0.5) + (30 if i == 2300 else 0)
        scores.append(det.score(T0 + 300 * i, v))
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert max(range(len(scores)), key=scores.__getitem__) == 800 and scores[800] >= det.fire_level
    assert sum(s >= det.fire_level for s in scores) <= 2
    # and it is saved in the current layout
    again = AnomalyDetector.from_state(json.loads(json.dumps(det.to_state())))
    assert again.to_state() == det.to_state()


def test_version_3_state_is_migrated():
    """A state persisted by the previous detector (block maxima kept as surprises; ~1450 points of
    a daily cycle at 5 minutes with points missing): its history carries over as it is, its bars
    become the deviations that have those surprises against each view's current spread, and it
    goes on detecting."""
    from app.detection.anomaly_views import deviation

    state = json.loads((FIXTURES / "anomaly_state_v3.json").read_text())
    assert state["version"] == 3
    det = AnomalyDetector.from_state(state)
    saved = det.to_state()
    assert saved["version"] == AnomalyDetector.VERSION == 4
    for key in ("rings", "times", "positions", "count", "dt", "dt_votes", "block_fill", "peak", "params"):
        assert saved[key] == state[key], key
    for c, ring in enumerate(state["rings"]):
        sp = deviation(sorted(ring), 0.0)[1]
        assert saved["block_max"][c] == pytest.approx([math.expm1(b) * sp for b in state["block_max"][c]])
        assert saved["current_max"][c] == pytest.approx(math.expm1(state["current_max"][c]) * sp)
    assert det.warmed_up and det.season_lag() == 288
    rng = random.Random(1)
    t_last = state["last_timestamp"]
    scores = []
    for i in range(1, 1001):
        v = 10 + 2 * math.sin(2 * math.pi * ((t_last - T0) / 300 + i) / 288) + rng.gauss(0, 0.5)
        scores.append(det.score(t_last + 300 * i, v + (30 if i == 800 else 0)))
    assert max(range(len(scores)), key=scores.__getitem__) == 799 and scores[799] >= det.fire_level
    assert sum(s >= det.fire_level for s in scores) <= 2
    again = AnomalyDetector.from_state(json.loads(json.dumps(det.to_state())))
    assert again.to_state() == det.to_state()


@pytest.mark.parametrize(
    "state",
    [
        {"kind": "robust_record", "version": 1},
        {"kind": "robust_record", "version": 99},
        {"kind": "something_else", "version": 4},
    ],
)
def test_unknown_state_is_refused(state):
    with pytest.raises(ValueError):
        AnomalyDetector.from_state(state)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradual_departure_is_reported(seed):
    """A departure that ramps up over tens of points is reported once it is large, not only by its
    small increments: the record bars are those of completed blocks, and a score is reported
    whenever it beats the damped recent peak by the margin."""
    brk = 7 * 288  # the daily cycle stops at phase 0, so the gap to it grows like a sine
    det = default_detector()
    hits = [
        (t - T0) // 300 for t, v in daily_series(seed=seed, break_at=brk) if det.score(t, v) >= det.fire_level
    ]
    assert any(brk <= i <= brk + 40 for i in hits), hits
    rng = random.Random(seed)
    det = default_detector()
    ramp = [
        det.score(T0 + 60 * i, 20 + rng.gauss(0, 1) + min(max(0.1 * (i - 2000), 0.0), 10.0))
        for i in range(3000)
    ]
    assert max(ramp[2000:2060]) >= det.fire_level


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_calmer_noise_is_not_an_alarm_when_the_window_forgets_the_loud_part(seed):
    """Noise that drops from sd 5 to sd 1 is no incident. Once the loud part leaves the window its
    spread collapses; bars kept as surprises (judged with the old, wide spread) were then broken
    by ordinary noise ~1200 points later. Bars are deviations judged with today's spread."""
    rng = random.Random(seed)
    det = default_detector()
    scores = [det.score(T0 + 60 * i, 20 + rng.gauss(0, 1) * (5 if i < 2000 else 1)) for i in range(5000)]
    assert max(scores[2000:]) < det.fire_level


def test_seasonal_view_waits_for_enough_seasons_in_the_window():
    """A reference that is the median of three days needs three days in the window: with one it
    echoes a level shift a day later (at a 2-minute cadence a day is 720 points)."""
    det = default_detector()
    for i in range(10):
        det.score(T0 + 120 * i, 1.0)
    assert det.season_lag() is None
    det5 = default_detector()
    for i in range(10):
        det5.score(T0 + 300 * i, 1.0)
    assert det5.season_lag() == 288
