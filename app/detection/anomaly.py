"""Streaming anomaly detector: one point at a time, bounded state, score in [0, 1].

Method (each choice judged on categories of the NAB subset left out of the choosing, see
``bench/nab_cv.py``; the measurements, and what was tried and rejected, are in docs/DETECTOR.md):

1. *Raw surprise* of each point in four views (``anomaly_views``), each a robust |z| (median and
   IQR) against a window of that view's own recent inputs, on a log scale: the value (level
   shifts, spikes); its absolute change (jumps inside the usual range); its difference from the
   median of the same time of day over the last ``nseasons`` days (on only once that many days fit
   in the window: a missing or distorted daily pattern is surprising, the usual daily swing is
   not, and one odd day does not echo the next); and the mean of the
   last ``smooth`` points (a shift too small for one noisy point but sustained over a few).
2. *Record exceedance*: a view scores only when its deviation beats the largest deviation of the
   same view over the last ``block * nblocks`` points (maxima of completed blocks, O(nblocks)
   state), and again over half that; the excess is measured as surprises with *today's* spread,
   ``log((spread + dev) / (spread + bar))``, so the bars stay comparable when the window's spread
   changes (as it does for ``window`` points after a level shift), and maps to
   ``1 - exp(-excess / tau)``; the two horizons are averaged, so a record of both scores more than
   a record of the shorter one only.
   Recurring patterns (daily jumps, routine spikes, noise) set the bar themselves, so the score is
   0 almost always and rises at a new extreme or a change of regime. The final score is the
   maximum over the views. The current block does not raise the bar, so a surprise that ramps up
   keeps gaining on it.
3. *Refractory period*: a score is reported only if it beats the recent peak (which decays to zero
   over ``refractory`` points) by ``margin``, because one episode should produce one alert (NAB
   charges every extra detection as a FP) and a plateau of surprise (a new level) none after its
   start; an episode that keeps growing may be reported a few times, each time higher.

Cost: ~10-15x the windowed Gaussian baseline in the same run (four sorted windows), 8-15 us/point
on a loaded 2-core machine. State: five rings of ``window`` floats and 4 x ``nblocks`` maxima.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.detection.anomaly_state import PersistedState
from app.detection.anomaly_views import CHANNELS, N_VIEWS, Views, deviation, spread

__all__ = ["CHANNELS", "AnomalyDetector", "AnomalyEvidence", "default_detector"]
_NV = N_VIEWS


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


class AnomalyDetector(PersistedState):
    """Robust surprise in four views + multi-horizon record-exceedance score + refractory period.

    State is bounded: four rings of ``window`` floats (and their sorted copies), the timestamps
    of the value ring, and ``4 * nblocks`` block maxima. Parameters are few and generic (no
    per-series tuning): ``window`` points of history for the robust statistics (and the longest
    seasonal reach); ``block`` × ``nblocks`` points of deviation history a new record is
    judged against (and half of it: the score averages both horizons); ``season`` the seasonal
    period in seconds (a day); ``nseasons`` how many past seasons the seasonal reference is the
    median of; ``smooth`` points in the short mean of the level view; ``tau`` the scale of the
    record excess mapped to [0, 1); ``min_history`` points a view needs before it may fire;
    ``refractory`` points of damping after a high score and ``margin`` by how much a score must
    beat the damped peak to be reported; ``fire_level`` the score that counts as ``firing``.
    """

    VERSION = 4
    N_VIEWS = _NV

    def __init__(
        self,
        window: int = 1024,
        block: int = 32,
        nblocks: int = 32,
        season: float = 86400.0,
        tau: float = 0.3,
        min_history: int = 128,
        refractory: int = 128,
        fire_level: float = 0.5,
        smooth: int = 4,
        nseasons: int = 3,
        margin: float = 0.1,
    ) -> None:
        if (
            window < 8
            or block < 1
            or nblocks < 1
            or min_history < 2
            or tau <= 0
            or refractory < 1
            or smooth < 1
            or nseasons < 1
            or not 0 <= margin < 1
        ):
            raise ValueError(
                "window >= 8, block >= 1, nblocks >= 1, min_history >= 2, tau > 0, "
                "refractory >= 1, smooth >= 1, nseasons >= 1, 0 <= margin < 1"
            )
        self.window = window
        self.block = block
        self.nblocks = nblocks
        self.season = season
        self.tau = tau
        self.min_history = min_history
        self.refractory = refractory
        self.fire_level = fire_level
        self.smooth = smooth
        self.nseasons = nseasons
        self.margin = margin
        self._short = max(1, nblocks // 2)  # the shorter record horizon, in blocks
        self.count = 0
        self.last_timestamp: float | None = None
        self.last_value: float | None = None
        # Per view: a ring of recent inputs and its sorted copy; the value ring's timestamps and
        # the cadence (the seasonal view's look-ups).
        self._views = Views(window, season, nseasons, smooth)
        # Per view: maxima of the deviation over completed blocks, and of the current block.
        self._bmax: list[list[float]] = [[] for _ in range(_NV)]
        self._cur = [0.0] * _NV
        self._rec_long = [0.0] * _NV  # max of the last nblocks block maxima (cached)
        self._rec_short = [0.0] * _NV  # max of the last nblocks // 2
        self._bn = 0
        self._peak = 0.0  # decaying peak of recent scores (refractory period)
        self.last_raw = 0.0
        self.last_score = 0.0

    # --- scoring -----------------------------------------------------------------------------
    @property
    def warmed_up(self) -> bool:
        """True once the points seen so far exceed the warm-up (the last one could fire)."""
        return self.count > self.min_history

    def season_lag(self) -> int | None:
        """Seasonal lag in points (from the cadence), if one season fits in the value window."""
        return self._views.season_lag()

    def score(self, timestamp: datetime | float, value: float) -> float:
        """Score one point (after the previous ones); never looks ahead."""
        ts = _as_seconds(timestamp)
        value = float(value)
        views = self._views
        if self.last_timestamp is not None and ts > self.last_timestamp:
            views.vote_cadence(ts - self.last_timestamp)
        inputs = views.inputs(ts, value, self.last_value)
        srts = views.sorted

        score = 0.0
        raw_max = 0.0
        inv_tau, mh = 1.0 / self.tau, self.min_history
        cur_max, rec_long, rec_short = self._cur, self._rec_long, self._rec_short
        for c in range(_NV):
            x = inputs[c]
            if x is None:
                continue
            srt = srts[c]
            if len(srt) >= 8:
                dev, sp = deviation(srt, x)
                raw = math.log1p(dev / sp)
                if raw > raw_max:  # noqa: PLR1730 (hot loop: avoids a call)
                    raw_max = raw
                # A point scores only if its deviation beats every deviation of this view over
                # the last ``block * nblocks`` (or half as many) points: recurring patterns
                # (daily jumps, routine spikes) set the bar, a change of regime or a new extreme
                # clears it. The bars are deviations, judged with *today's* spread: the excess
                # log((sp + dev) / (sp + bar)) is the surprise of this point over the surprise
                # the bar would have now. (Bars kept as surprises went stale when the window's
                # spread collapsed, e.g. once the old level of a shift left it, and ordinary
                # noise then broke them.) Averaging the two horizons makes the score less
                # dependent on either, and a record of both scores higher than one of the
                # shorter only. The bars are those of completed blocks only, so a surprise that
                # ramps up keeps gaining on them instead of chasing itself.
                if len(srt) >= mh:
                    bar = rec_short[c]
                    if dev > bar:
                        s = 1.0 - ((sp + bar) / (sp + dev)) ** inv_tau
                        bar = rec_long[c]
                        if dev > bar:
                            s += 1.0 - ((sp + bar) / (sp + dev)) ** inv_tau
                        s *= 0.5
                        if s > score:  # noqa: PLR1730
                            score = s
                if dev > cur_max[c]:  # noqa: PLR1730
                    cur_max[c] = dev
            views.add(c, x, ts)  # after scoring: the point is judged against the past only
        self._bn += 1
        if self._bn >= self.block:
            self._close_block()

        self.count += 1
        self.last_timestamp = ts
        self.last_value = value
        self.last_raw = raw_max
        if self.count <= self.min_history:
            score = 0.0
        # Refractory: a score is reported only if it beats the recent peak (which decays
        # linearly to 0 over ``refractory`` points) by ``margin``, so one episode yields one
        # high score, or a few if it keeps growing, and a plateau of surprise stays silent.
        peak = self._peak
        self._peak = max(peak - 1.0 / self.refractory, score, 0.0)
        if score < peak + self.margin:
            score = 0.0
        self.last_score = score
        return score

    def _close_block(self) -> None:
        for c in range(_NV):
            bm = self._bmax[c]
            bm.append(self._cur[c])
            if len(bm) > self.nblocks:
                del bm[0]
            self._cur[c] = 0.0
        self._bn = 0
        self._refresh_records()

    def _refresh_records(self) -> None:
        short = self._short
        for c in range(_NV):
            bm = self._bmax[c]
            self._rec_long[c] = max(bm) if bm else 0.0
            self._rec_short[c] = max(bm[-short:]) if bm else 0.0

    def evaluate(self, timestamp: datetime | float, value: float) -> AnomalyEvidence:
        s = self.score(timestamp, value)
        b = self.baseline()
        return AnomalyEvidence(
            timestamp=self.last_timestamp or 0.0,
            value=float(value),
            score=s,
            raw=self.last_raw,
            baseline_median=b["median"],
            baseline_spread=b["spread"],
            warmed_up=self.warmed_up,
            firing=self.warmed_up and s >= self.fire_level,
        )

    # --- display and persistence ---------------------------------------------------------------
    def baseline(self) -> dict[str, float]:
        srt = self._views.sorted[0]
        n = len(srt)
        if n == 0:
            return {
                "count": self.count,
                "median": math.nan,
                "spread": math.nan,
                "p05": math.nan,
                "p95": math.nan,
                "warmed_up": False,
            }
        return {
            "count": self.count,
            "median": srt[n >> 1],
            "spread": spread(srt),
            "p05": srt[int(0.05 * (n - 1))],
            "p95": srt[int(0.95 * (n - 1))],
            "warmed_up": self.warmed_up,
        }

    def params(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "block": self.block,
            "nblocks": self.nblocks,
            "season": self.season,
            "tau": self.tau,
            "min_history": self.min_history,
            "refractory": self.refractory,
            "fire_level": self.fire_level,
            "smooth": self.smooth,
            "nseasons": self.nseasons,
            "margin": self.margin,
        }


def default_detector() -> AnomalyDetector:
    """The one detector the service, the CLI and the NAB harness all use."""
    return AnomalyDetector()
