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


@pytest.mark.parametrize("name", ["realAWSCloudwatch/ec2_cpu_utilization_825cc2.csv",
                                  "realAWSCloudwatch/rds_cpu_utilization_cc0c53.csv"])
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
