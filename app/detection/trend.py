"""Trend prediction like Prometheus' ``predict_linear``: least squares over a bounded window.

A rule fires when the predicted time until the threshold is crossed is below a horizon. To avoid
"disk full in 3 years" flapping on noise, a prediction is made only with enough points, a slope
that is statistically distinguishable from zero (|t| of the slope), and a fit that explains the
data (R²). Memory is bounded by ``max_points``; sums are recomputed from the ring (at most a few
hundred points) rather than updated incrementally, which keeps them exact under eviction.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any


def _as_seconds(timestamp: datetime | float) -> float:
    return timestamp.timestamp() if isinstance(timestamp, datetime) else float(timestamp)


@dataclass(frozen=True)
class TrendFit:
    n: int
    slope: float  # units per second
    intercept: float  # value at the last timestamp
    r2: float
    t_stat: float
    significant: bool


@dataclass(frozen=True)
class TrendEvaluation:
    firing: bool
    value: float
    threshold: float
    seconds_to_cross: float | None
    horizon_seconds: float
    slope_per_second: float
    r2: float
    n: int


class TrendPredictor:
    def __init__(
        self,
        window_seconds: float = 3600.0,
        max_points: int = 360,
        min_points: int = 10,
        min_r2: float = 0.5,
        min_t: float = 4.0,
    ) -> None:
        self.window_seconds = float(window_seconds)
        self.max_points = int(max_points)
        self.min_points = int(min_points)
        self.min_r2 = float(min_r2)
        self.min_t = float(min_t)
        self.points: deque[tuple[float, float]] = deque(maxlen=self.max_points)

    def add(self, timestamp: datetime | float, value: float) -> None:
        ts = _as_seconds(timestamp)
        self.points.append((ts, float(value)))
        horizon_start = ts - self.window_seconds
        while self.points and self.points[0][0] < horizon_start:
            self.points.popleft()

    def fit(self) -> TrendFit | None:
        n = len(self.points)
        if n < max(self.min_points, 3):
            return None
        t_last = self.points[-1][0]
        # centre time on the last point: better conditioning, and the intercept is "now"
        xs = [t - t_last for t, _ in self.points]
        ys = [v for _, v in self.points]
        mx = sum(xs) / n
        my = sum(ys) / n
        sxx = sum((x - mx) ** 2 for x in xs)
        if sxx <= 0.0:
            return None
        sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
        syy = sum((y - my) ** 2 for y in ys)
        slope = sxy / sxx
        intercept = my - slope * mx
        sse = max(syy - slope * sxy, 0.0)
        r2 = 1.0 - sse / syy if syy > 0 else 0.0
        se = math.sqrt(sse / (n - 2) / sxx) if n > 2 else math.inf
        t_stat = abs(slope) / se if se > 0 else math.inf
        significant = slope != 0.0 and r2 >= self.min_r2 and t_stat >= self.min_t
        return TrendFit(n, slope, intercept, r2, t_stat, significant)

    def predict(self, seconds_ahead: float) -> float | None:
        """``predict_linear``: the fitted value ``seconds_ahead`` after the last point."""
        f = self.fit()
        return None if f is None else f.intercept + f.slope * seconds_ahead

    def predict_time_to_cross(self, threshold: float) -> float | None:
        """Seconds from the last point until the fitted line crosses ``threshold``; ``0`` if the fit
        sits on it, ``None`` without a significant trend towards it (threshold rules cover "already past")."""
        f = self.fit()
        if f is None or not f.significant:
            return None
        gap = threshold - f.intercept
        if gap == 0.0:
            return 0.0
        eta = gap / f.slope
        # moving away from the threshold (or already beyond it): no crossing ahead
        return eta if eta > 0.0 else None

    def evaluate(
        self, timestamp: datetime | float, value: float, threshold: float, horizon_seconds: float
    ) -> TrendEvaluation:
        self.add(timestamp, value)
        f = self.fit()
        eta = self.predict_time_to_cross(threshold)
        return TrendEvaluation(
            firing=eta is not None and eta < horizon_seconds,
            value=float(value),
            threshold=threshold,
            seconds_to_cross=eta,
            horizon_seconds=horizon_seconds,
            slope_per_second=f.slope if f else 0.0,
            r2=f.r2 if f else 0.0,
            n=len(self.points),
        )

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": "trend",
            "window_seconds": self.window_seconds,
            "max_points": self.max_points,
            "min_points": self.min_points,
            "min_r2": self.min_r2,
            "min_t": self.min_t,
            "points": [list(p) for p in self.points],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TrendPredictor:
        tp = cls(
            state["window_seconds"], state["max_points"], state["min_points"], state["min_r2"], state["min_t"]
        )
        tp.points.extend((float(t), float(v)) for t, v in state["points"])
        return tp
