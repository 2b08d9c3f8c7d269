from __future__ import annotations

import csv

from typer.testing import CliRunner

from app.cli import build_app


def test_detect_csv(tmp_path):
    src = tmp_path / "in.csv"
    rows = [(f"2014-04-01 {i // 60:02d}:{i % 60:02d}:00", 10.0 + (i % 3)) for i in range(300)] + [
        ("2014-04-01 05:00:00", 500.0)
    ]
    with src.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "value"])
        w.writerows(rows)
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(build_app(), ["metrics", "detect", "--csv", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.output
    got = list(csv.DictReader(out.open()))
    assert len(got) == len(rows) and set(got[0]) == {"timestamp", "value", "anomaly_score"}
    scores = [float(r["anomaly_score"]) for r in got]
    assert all(0.0 <= s <= 1.0 for s in scores) and scores[-1] > 0.5 and max(scores[:100]) == 0.0
