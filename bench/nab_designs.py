"""The designs the NAB benches print side by side: the service's detector, the alternatives that
were measured against it (docs/DETECTOR.md says why none replaced it), and the windowed-Gaussian
baseline. Each is a factory of objects with ``score(timestamp, value) -> float``."""

from __future__ import annotations

import statistics
from collections.abc import Callable

from app.detection.anomaly import AnomalyDetector, default_detector

Factory = Callable[[], object]


def designs(baseline: Factory) -> list[tuple[str, Factory]]:
    return [
        ("detector (service default)", default_detector),
        # The configuration bench/nab_cv.py's search picks on every training fold.
        ("window 2048", lambda: AnomalyDetector(window=2048)),
        # The same with the record horizon spanning the window (blocks of 64).
        ("window 2048, record horizon 2048", lambda: AnomalyDetector(window=2048, block=64)),
        ("windowed Gaussian (baseline)", baseline),
    ]


def fold_summary(per_fold: dict[str, float | None]) -> str:
    """Mean, spread (population std) and range of the held-out folds' standard scores; folds with
    no window (nothing to detect) are left out of the mean and shown by their false alarms."""
    scored = [v for v in per_fold.values() if v is not None]
    if not scored:
        return "n/a"
    return (f"{statistics.fmean(scored):5.1f} ± {statistics.pstdev(scored):4.1f} "
            f"[{min(scored):.1f} .. {max(scored):.1f}]")
