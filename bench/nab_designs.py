"""The designs the NAB benches print side by side: the service's detector, the previous one, an
alternative measured against it (docs/DETECTOR.md has the others and why they lost), and the
windowed-Gaussian baseline. Each is a factory of objects with ``score(timestamp, value) -> float``."""

from __future__ import annotations

import statistics
from collections.abc import Callable

from anomaly_v3 import AnomalyDetectorV3

from app.detection.anomaly import AnomalyDetector, default_detector

Factory = Callable[[], object]


def designs(baseline: Factory) -> list[tuple[str, Factory]]:
    return [
        ("detector (service default)", default_detector),
        # The previous detector: bars kept as surprises (bench/anomaly_v3.py).
        ("previous detector (v3)", AnomalyDetectorV3),
        # The configuration bench/nab_cv.py's search picks on most training folds; twice the state.
        ("detector, window 2048", lambda: AnomalyDetector(window=2048)),
        ("windowed Gaussian (baseline)", baseline),
    ]


def fold_summary(per_fold: dict[str, float | None]) -> str:
    """Mean, spread (population std) and range of the held-out folds' standard scores; folds with
    no window (nothing to detect) are left out of the mean and shown by their false alarms."""
    scored = [v for v in per_fold.values() if v is not None]
    if not scored:
        return "n/a"
    return (
        f"{statistics.fmean(scored):5.1f} ± {statistics.pstdev(scored):4.1f} "
        f"[{min(scored):.1f} .. {max(scored):.1f}]"
    )
