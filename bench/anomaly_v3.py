"""The previous (version-3) detector, kept only so the NAB benches can print it beside the current one.

It is app/detection/anomaly.py as it was before its record bars became deviations judged with the
current spread (layout 4), without persistence.
Original description:

Streaming anomaly detector: one point at a time, bounded state, score in [0, 1].

Method (chosen on the NAB evidence, see ``bench/nab.py`` and, for held-out figures and parameter
sensitivity, ``bench/nab_cv.py``):

1. *Raw surprise* of each point in four views, each against a bounded window of its own recent
   history with robust statistics (median and IQR from a sorted copy, so one outlier cannot
   inflate the spread it is judged against), on a log scale: the value (level shifts, spikes); its
   absolute change from the previous point (jumps inside the usual range); its difference from the
   median of the values at the same time of day over the last ``nseasons`` days still in the window
   (a context-aware baseline: a missing or distorted daily pattern is surprising, the usual daily
   swing is not; the median keeps one odd day from echoing the next day); and the mean of the last
   ``smooth`` points (a shift too small for one noisy point but sustained over a few).
   The past values of the seasonal view are looked up by *time* (nearest stored point within half
   a cadence), and the cadence is the usual gap (a majority vote), so missing points, duplicates
   and one odd gap neither misalign the days nor switch the view off.
2. *Record exceedance*: a view scores only when its surprise beats the largest surprise of the same
   view over the last ``block * nblocks`` points (maxima of completed blocks, O(nblocks) state), and
   again over half that; each exceedance maps to ``1 - exp(-excess / tau)`` and the two are
   averaged, so a record of both horizons scores more than a record of the shorter one only.
   Recurring patterns (daily jumps, routine spikes, noise) set the bar themselves, so the score is
   0 almost always and rises at a new extreme or a change of regime. The final score is the
   maximum over the views. The current block does not raise the bar, so a surprise that ramps up
   keeps gaining on it.
3. *Refractory period*: a score is reported only if it beats the recent peak (which decays to zero
   over ``refractory`` points) by ``margin``, because one episode should produce one alert (NAB
   charges every extra detection as a FP) and a plateau of surprise (a new level) none after its
   start; an episode that keeps growing may be reported a few times, each time higher.

The measurements behind each choice (and what was tried and rejected) are in docs/DETECTOR.md.

Cost: ~13-16x the windowed Gaussian baseline in the same run (four sorted windows), 7-10 us/point
on a loaded 2-core machine. State: five rings of ``window`` floats and 4 x ``nblocks`` maxima.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from dataclasses import dataclass
from datetime import datetime
from typing import Any

CHANNELS = ("value", "change", "seasonal", "level")
_NV = len(CHANNELS)


def _as_seconds(timestamp: datetime | float) -> float:
    return timestamp.timestamp() if isinstance(timestamp, datetime) else float(timestamp)


def _push(ring: list[float], srt: list[float], pos: int, cap: int, x: float) -> int:
    if len(ring) < cap:
        ring.append(x)
    else:
        old = ring[pos]
        ring[pos] = x
        del srt[bisect_left(srt, old)]
    insort(srt, x)
    return (pos + 1) % cap


def _spread(srt: list[float]) -> float:
    n = len(srt)
    return (srt[(3 * n) >> 2] - srt[n >> 2]) / 1.349


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


class AnomalyDetectorV3:
    """Robust surprise in four views + multi-horizon record-exceedance score + refractory period.

    State is bounded: four rings of ``window`` floats (and their sorted copies), the timestamps
    of the value ring, and ``4 * nblocks`` block maxima. Parameters are few and generic (no
    per-series tuning): ``window`` points of history for the robust statistics (and the longest
    seasonal reach); ``block`` × ``nblocks`` points of raw-surprise history a new record is
    judged against (and half of it: the score averages both horizons); ``season`` the seasonal
    period in seconds (a day); ``nseasons`` how many past seasons the seasonal reference is the
    median of; ``smooth`` points in the short mean of the level view; ``tau`` the scale of the
    record excess mapped to [0, 1); ``min_history`` points a view needs before it may fire;
    ``refractory`` points of damping after a high score and ``margin`` by how much a score must
    beat the damped peak to be reported; ``fire_level`` the score that counts as ``firing``.
    """

    VERSION = 3
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
        # The usual spacing of points (the cadence): a majority vote over the gaps, so a few
        # odd gaps (a missed scrape, a duplicate, a burst) do not change it.
        self._dt: float | None = None
        self._dt_votes = 0
        # Per view: ring of recent inputs (insertion order), the same sorted, write position.
        self._rings: list[list[float]] = [[] for _ in range(_NV)]
        self._sorted: list[list[float]] = [[] for _ in range(_NV)]
        self._pos = [0] * _NV
        self._times: list[float] = []  # timestamps of the value ring (same positions)
        # Per view: maxima of raw surprise over completed blocks, and of the current block.
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
        if self._dt is None or self.season <= 0:
            return None
        lag = round(self.season / self._dt)
        return lag if 4 <= lag <= self.window else None

    def _value_at(self, target: float, guess: int) -> float | None:
        """The stored value nearest in time to ``target`` (within half a cadence), if any.

        ``guess`` is how many points back it should be at the usual cadence: checked first, so a
        regular series costs one look-up; gaps and jitter fall back to a binary search."""
        times = self._times
        n = len(times)
        if n == 0 or self._dt is None:
            return None
        tol = 0.5 * self._dt
        oldest = self._pos[0] if n == self.window else 0
        if 1 <= guess <= n:
            i = (oldest + n - guess) % n
            if abs(times[i] - target) <= tol:
                return self._rings[0][i]
        lo, hi = 0, n  # times are in order from ``oldest``: search the virtual order
        while lo < hi:
            mid = (lo + hi) >> 1
            if times[(oldest + mid) % n] < target:
                lo = mid + 1
            else:
                hi = mid
        best, err = None, tol
        for k in (lo - 1, lo):
            if 0 <= k < n:
                i = (oldest + k) % n
                e = abs(times[i] - target)
                if e <= err:
                    best, err = i, e
        return None if best is None else self._rings[0][best]

    def _seasonal_reference(self, ts: float, lag: int) -> float | None:
        """Median of the values at the same time of the last ``nseasons`` seasons that are still
        in the window: one odd day (an anomaly, a holiday) neither hides a repeat nor echoes."""
        refs = []
        for k in range(1, self.nseasons + 1):
            r = self._value_at(ts - k * self.season, k * lag)
            if r is None:
                break
            refs.append(r)
        m = len(refs)
        if m == 0:
            return None
        if m == 1:
            return refs[0]
        refs.sort()
        return refs[m >> 1] if m & 1 else 0.5 * (refs[(m >> 1) - 1] + refs[m >> 1])

    def score(self, timestamp: datetime | float, value: float) -> float:
        """Score one point (after the previous ones); never looks ahead."""
        ts = _as_seconds(timestamp)
        value = float(value)
        last = self.last_value
        if self.last_timestamp is not None and ts > self.last_timestamp:
            gap = ts - self.last_timestamp
            dt = self._dt
            if dt is not None and abs(gap - dt) <= 0.01 * dt:
                self._dt_votes += 1
            elif self._dt_votes > 0:
                self._dt_votes -= 1
            else:
                self._dt, self._dt_votes = gap, 1
        rings, srts = self._rings, self._sorted
        vr = rings[0]
        n0 = len(vr)
        # Inputs of the views: the value; its absolute change; its difference from the same time
        # of the previous seasons; the mean of the last ``smooth`` values (a shift too small for
        # one noisy point but sustained over a few).
        inputs: list[float | None] = [value, None, None, None]
        if last is not None:
            inputs[1] = abs(value - last)
        lag = self.season_lag()
        if lag is not None:
            ref = self._seasonal_reference(ts, lag)
            if ref is not None:
                inputs[2] = value - ref
        k = self.smooth
        if n0 >= k - 1:
            acc = value
            p0 = self._pos[0]
            for j in range(1, k):
                acc += vr[(p0 - j) % n0]
            inputs[3] = acc / k

        score = 0.0
        raw_max = 0.0
        tau, mh = self.tau, self.min_history
        cur_max, rec_long, rec_short = self._cur, self._rec_long, self._rec_short
        for c in range(_NV):
            x = inputs[c]
            if x is None:
                continue
            srt = srts[c]
            if len(srt) >= 8:
                raw = _surprise(srt, x)
                if raw > raw_max:  # noqa: PLR1730 (hot loop: avoids a call)
                    raw_max = raw
                # A point scores only if its surprise beats every surprise of this view over
                # the last ``block * nblocks`` (or half as many) points: recurring patterns
                # (daily jumps, routine spikes) set the bar, a change of regime or a new extreme
                # clears it. Averaging the two horizons makes the score less dependent on
                # either, and a record of both scores higher than one of the shorter only.
                # The bars are those of completed blocks only, so a surprise that ramps up
                # keeps gaining on them (and its score keeps rising) instead of chasing itself.
                if len(srt) >= mh:
                    bar = rec_short[c]
                    if raw > bar:
                        s = 1.0 - math.exp(-(raw - bar) / tau)
                        bar = rec_long[c]
                        if raw > bar:
                            s += 1.0 - math.exp(-(raw - bar) / tau)
                        s *= 0.5
                        if s > score:  # noqa: PLR1730
                            score = s
                if raw > cur_max[c]:  # noqa: PLR1730
                    cur_max[c] = raw
            # update history after scoring: the point is judged against the past only
            if c == 0:
                if n0 < self.window:
                    self._times.append(ts)
                else:
                    self._times[self._pos[0]] = ts
            self._pos[c] = _push(rings[c], srt, self._pos[c], self.window, x)
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
        srt = self._sorted[0]
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
            "spread": _spread(srt),
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


def default_detector() -> AnomalyDetectorV3:
    """The one detector the service, the CLI and the NAB harness all use."""
    return AnomalyDetectorV3()
