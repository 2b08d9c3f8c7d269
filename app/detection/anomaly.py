"""Streaming anomaly detector: one point at a time, bounded state, score in [0, 1].

Method (chosen on the NAB evidence, see ``bench/nab.py``):

1. *Raw surprise* of each point against a bounded window of recent history, with robust
   statistics (median and inter-quartile range from a sorted copy of the window, so one outlier
   cannot inflate the spread it is judged against). Two views are scored and the larger is kept:
   the value itself (level shifts, spikes) and its change from the previous point (sudden jumps
   inside the usual range, broken rhythms).
2. *Anomaly likelihood* (Numenta's post-processing): the tail probability of the short-term mean of
   the raw surprise under the long-run distribution of raw surprise. A series that is always noisy
   has a high raw surprise all the time and therefore a low likelihood; only a change in how
   surprising the series is scores high. Reported on Numenta's log scale, so the score is low
   almost always and only rises near 1 for very unlikely stretches.
3. *Refractory period*: only the part of a score above the recent peak (which decays to zero over
   ``refractory`` points) is reported, because one episode should produce one alert (and NAB charges
   every extra detection as a FP). ``fire_level`` (0.3) is near the NAB-optimal threshold.

Tried and rejected on the evidence (``bench/nab.py``): discounting surprises seen at the same time
of day yesterday (daily seasonality) lowered the standard score from 46 to 34-42, both when applied
to the raw surprise and to the final score; window 256/512/2048 and other gains scored lower.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from dataclasses import dataclass
from datetime import datetime
from typing import Any

_LOG_1E10 = math.log(1e-10)
_SQRT2 = math.sqrt(2.0)
# The short-term mean of raw surprise varies less than single points; scaling its deviation
# (≈ sqrt of the short window) puts a sustained change on the same footing as a spike.
SHORT_GAIN = 3.0


def _as_seconds(timestamp: datetime | float) -> float:
    return timestamp.timestamp() if isinstance(timestamp, datetime) else float(timestamp)


@dataclass(frozen=True)
class AnomalyEvidence:
    """What a rule needs to explain a firing: the point, the baseline it was judged against, the score."""

    timestamp: float
    value: float
    score: float
    raw: float
    baseline_median: float
    baseline_spread: float
    warmed_up: bool
    firing: bool


class AnomalyDetector:
    """Robust windowed surprise + anomaly likelihood. State is bounded by ``window`` floats.

    Parameters are few and generic (no per-series tuning):
    ``window`` points of history for the robust statistics; ``short`` points averaged for the
    likelihood; ``long_alpha`` the forgetting rate of the raw-surprise distribution;
    ``min_history`` points before the detector may fire; ``refractory`` points of damping after
    a firing; ``fire_level`` the score that counts as a firing for the refractory period and ``firing``.
    """

    VERSION = 1

    def __init__(
        self,
        window: int = 1024,
        short: int = 6,
        long_alpha: float = 0.002,
        min_history: int = 64,
        refractory: int = 64,
        fire_level: float = 0.3,
    ) -> None:
        if window < 8 or short < 1 or min_history < 2:
            raise ValueError("window >= 8, short >= 1, min_history >= 2")
        self.window = window
        self.short = short
        self.long_alpha = long_alpha
        self.min_history = min_history
        self.refractory = refractory
        self.fire_level = fire_level
        self.count = 0
        self.last_timestamp: float | None = None
        self.last_value: float | None = None
        # Ring of recent values (insertion order) and the same values sorted, for order statistics.
        self._ring: list[float] = []
        self._sorted: list[float] = []
        self._pos = 0
        # Same for absolute changes between consecutive points.
        self._dring: list[float] = []
        self._dsorted: list[float] = []
        self._dpos = 0
        # Short-term mean of raw surprise (ring) and long-run mean/variance (exponential).
        self._short: list[float] = []
        self._spos = 0
        self._mu = 0.0
        self._var = 0.0
        self._nraw = 0
        self._peak = 0.0  # decaying peak of recent scores (refractory period)
        self.last_raw = 0.0
        self.last_score = 0.0

    # --- scoring -----------------------------------------------------------------------------
    @property
    def warmed_up(self) -> bool:
        """True once the points seen so far exceed the warm-up (the last one could fire)."""
        return self.count > self.min_history

    @staticmethod
    def _push(ring: list[float], srt: list[float], pos: int, cap: int, x: float) -> int:
        if len(ring) < cap:
            ring.append(x)
        else:
            old = ring[pos]
            ring[pos] = x
            del srt[bisect_left(srt, old)]
        insort(srt, x)
        return (pos + 1) % cap

    @staticmethod
    def _surprise(srt: list[float], x: float) -> float:
        """Robust |z| of x against sorted history (median, IQR), on a log scale."""
        n = len(srt)
        med = srt[n >> 1]
        spread = (srt[(3 * n) >> 2] - srt[n >> 2]) / 1.349
        # Flat or quantised history has no IQR: fall back to the full range, then to a tiny
        # fraction of the level, so that the first departure from a flat line is very surprising.
        if spread <= 0.0:
            spread = (srt[-1] - srt[0]) / 4.0
            if spread <= 0.0:
                spread = 1e-3 * abs(med) + 1e-9
        return math.log1p(abs(x - med) / spread)

    def score(self, timestamp: datetime | float, value: float) -> float:
        """Score one point (after the previous ones); never looks ahead."""
        ts = _as_seconds(timestamp)
        value = float(value)
        raw = 0.0
        last = self.last_value
        if self.count >= 8:
            raw = self._surprise(self._sorted, value)
            if last is not None and len(self._dsorted) >= 8:
                draw = self._surprise(self._dsorted, abs(value - last))
                raw = max(raw, draw)
        # update history after scoring: the point is judged against the past only
        if last is not None:
            self._dpos = self._push(self._dring, self._dsorted, self._dpos, self.window, abs(value - last))
        self._pos = self._push(self._ring, self._sorted, self._pos, self.window, value)
        self.count += 1
        self.last_timestamp = ts
        self.last_value = value
        self.last_raw = raw

        short = self._short
        if len(short) < self.short:
            short.append(raw)
        else:
            short[self._spos] = raw
        self._spos = (self._spos + 1) % self.short
        short_mean = sum(short) / len(short)

        score = 0.0
        if self._nraw >= 8:
            sd = math.sqrt(self._var) if self._var > 1e-12 else 1e-6
            # One very surprising point (a spike) or a run of moderately surprising ones (a
            # change of regime): whichever is less likely under the long-run raw distribution.
            zt = max(raw - self._mu, (short_mean - self._mu) * SHORT_GAIN) / sd
            tail = 0.5 * math.erfc(zt / _SQRT2)
            score = math.log(tail + 1e-10) / _LOG_1E10
            score = 0.0 if score < 0.0 else (min(score, 1.0))
        if self._nraw == 0:
            self._mu = raw
        else:
            a = max(self.long_alpha, 1.0 / (self._nraw + 1))
            d = raw - self._mu
            self._mu += a * d
            self._var = (1.0 - a) * (self._var + a * d * d)
        self._nraw += 1

        if self.count <= self.min_history:
            score = 0.0
        # Refractory: report only what exceeds the recent peak, which decays linearly to 0
        # over ``refractory`` points, so one episode yields one high score.
        peak = self._peak
        self._peak = max(peak - 1.0 / self.refractory, score, 0.0)
        score = score - peak if score > peak else 0.0
        self.last_score = score
        return score

    def evaluate(self, timestamp: datetime | float, value: float) -> AnomalyEvidence:
        s = self.score(timestamp, value)
        b = self.baseline()
        return AnomalyEvidence(
            timestamp=self.last_timestamp or 0.0, value=float(value), score=s, raw=self.last_raw,
            baseline_median=b["median"], baseline_spread=b["spread"],
            warmed_up=self.warmed_up, firing=self.warmed_up and s >= self.fire_level,
        )

    # --- display and persistence ---------------------------------------------------------------
    def baseline(self) -> dict[str, float]:
        srt = self._sorted
        n = len(srt)
        if n == 0:
            return {"count": self.count, "median": math.nan, "spread": math.nan, "p05": math.nan,
                    "p95": math.nan, "warmed_up": False}
        return {
            "count": self.count,
            "median": srt[n >> 1],
            "spread": (srt[(3 * n) >> 2] - srt[n >> 2]) / 1.349,
            "p05": srt[int(0.05 * (n - 1))],
            "p95": srt[int(0.95 * (n - 1))],
            "warmed_up": self.warmed_up,
        }

    def to_state(self) -> dict[str, Any]:
        """JSON-able snapshot. Rings are stored as they are (with their write positions) so a
        restored detector continues with bit-identical scores."""
        return {
            "kind": "robust_likelihood",
            "version": self.VERSION,
            "params": {"window": self.window, "short": self.short, "long_alpha": self.long_alpha,
                       "min_history": self.min_history, "refractory": self.refractory,
                       "fire_level": self.fire_level},
            "count": self.count,
            "last_timestamp": self.last_timestamp,
            "last_value": self.last_value,
            "values": list(self._ring), "values_pos": self._pos,
            "changes": list(self._dring), "changes_pos": self._dpos,
            "short": list(self._short), "short_pos": self._spos,
            "mu": self._mu, "var": self._var, "nraw": self._nraw, "peak": self._peak,
            "last_raw": self.last_raw, "last_score": self.last_score,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> AnomalyDetector:
        if state.get("kind") != "robust_likelihood" or state.get("version") != cls.VERSION:
            raise ValueError("unsupported detector state")
        det = cls(**state["params"])
        det.count = int(state["count"])
        det.last_timestamp = state["last_timestamp"]
        det.last_value = state["last_value"]
        det._ring = [float(v) for v in state["values"]]
        det._sorted = sorted(det._ring)
        det._pos = int(state["values_pos"])
        det._dring = [float(v) for v in state["changes"]]
        det._dsorted = sorted(det._dring)
        det._dpos = int(state["changes_pos"])
        det._short = [float(v) for v in state["short"]]
        det._spos = int(state["short_pos"])
        det._mu, det._var, det._nraw = float(state["mu"]), float(state["var"]), int(state["nraw"])
        det._peak = float(state["peak"])
        det.last_raw, det.last_score = float(state["last_raw"]), float(state["last_score"])
        return det


def default_detector() -> AnomalyDetector:
    """The one detector the service, the CLI and the NAB harness all use."""
    return AnomalyDetector()
