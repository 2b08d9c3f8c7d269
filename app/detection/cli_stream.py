"""Stream a NAB-style ``timestamp,value`` CSV through the service's detector (the harness input)."""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from app.detection.anomaly import AnomalyDetector, default_detector


def parse_timestamp(text: str) -> datetime:
    """NAB timestamps (``2014-04-01 00:00:00[.ffffff]``) and ISO 8601; naive means UTC."""
    ts = datetime.fromisoformat(text.strip())
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def detect_csv(in_path: str | Path, out_path: str | Path,
               detector_factory: Callable[[], AnomalyDetector] = default_detector) -> int:
    """Write ``timestamp,value,anomaly_score`` for every input row; returns the number of rows."""
    detector = detector_factory()
    rows = 0
    with open(in_path, newline="") as src, open(out_path, "w", newline="") as dst:
        reader = csv.DictReader(src)
        writer = csv.writer(dst)
        writer.writerow(["timestamp", "value", "anomaly_score"])
        for row in reader:
            value = float(row["value"])
            score = detector.score(parse_timestamp(row["timestamp"]), value)
            writer.writerow([row["timestamp"], row["value"], f"{score:.6f}"])
            rows += 1
    return rows
