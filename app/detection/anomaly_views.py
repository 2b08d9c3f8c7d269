"""The detector's views of a series: four robust surprises per point, each against its own window.

A view turns a point into an input (the value; its absolute change; its difference from the same
time of the previous days; the mean of the last few values) and judges it against a bounded
window of that view's own recent inputs with robust statistics (median and IQR from a sorted
copy, so one outlier cannot inflate the spread it is judged against), on a log scale. The
seasonal view looks its past values up by *time* (nearest stored point within half a cadence),
and the cadence is the usual gap (a majority vote), so missing points, duplicates and one odd gap
neither misalign the days nor switch the view off.
"""

from __future__ import annotations

from bisect import bisect_left, insort

CHANNELS = ("value", "change", "seasonal", "level")
N_VIEWS = len(CHANNELS)


def push(ring: list[float], srt: list[float], pos: int, cap: int, x: float) -> int:
    """Append ``x`` to the ring (overwriting the oldest when full) and its sorted copy; new position."""
    if len(ring) < cap:
        ring.append(x)
    else:
        old = ring[pos]
        ring[pos] = x
        del srt[bisect_left(srt, old)]
    insort(srt, x)
    return (pos + 1) % cap


def spread(srt: list[float]) -> float:
    n = len(srt)
    return (srt[(3 * n) >> 2] - srt[n >> 2]) / 1.349


def deviation(srt: list[float], x: float) -> tuple[float, float]:
    """|x - median| of sorted history and the robust spread (IQR) it is judged against; the
    surprise is ``log1p(deviation / spread)``, a robust |z| on a log scale."""
    n = len(srt)
    med = srt[n >> 1]
    sp = (srt[(3 * n) >> 2] - srt[n >> 2]) / 1.349
    if sp <= 0.0:
        sp = (srt[-1] - srt[0]) / 4.0
        if sp <= 0.0:
            sp = 1e-3 * abs(med) + 1e-9
    return abs(x - med), sp


class Views:
    """Rings of the four views' inputs, the timestamps of the value ring, and the cadence."""

    def __init__(self, window: int, season: float, nseasons: int, smooth: int) -> None:
        self.window = window
        self.season = season
        self.nseasons = nseasons
        self.smooth = smooth
        self.dt: float | None = None  # the usual spacing of points: a majority vote over gaps
        self.dt_votes = 0
        self.rings: list[list[float]] = [[] for _ in range(N_VIEWS)]
        self.sorted: list[list[float]] = [[] for _ in range(N_VIEWS)]
        self.pos = [0] * N_VIEWS
        self.times: list[float] = []  # timestamps of the value ring (same positions)

    def vote_cadence(self, gap: float) -> None:
        dt = self.dt
        if dt is not None and abs(gap - dt) <= 0.01 * dt:
            self.dt_votes += 1
        elif self.dt_votes > 0:
            self.dt_votes -= 1
        else:
            self.dt, self.dt_votes = gap, 1

    def season_lag(self) -> int | None:
        """Seasonal lag in points (from the cadence), if ``nseasons`` seasons fit in the value
        window: the reference is their median so that one odd day (a shift, an outage) neither
        hides a repeat nor echoes a season later; with a single day in reach it would echo."""
        if self.dt is None or self.season <= 0:
            return None
        lag = round(self.season / self.dt)
        return lag if lag >= 4 and lag * self.nseasons <= self.window else None

    def value_at(self, target: float, guess: int) -> float | None:
        """The stored value nearest in time to ``target`` (within half a cadence), if any.

        ``guess`` is how many points back it should be at the usual cadence: checked first, so a
        regular series costs one look-up; gaps and jitter fall back to a binary search."""
        times = self.times
        n = len(times)
        if n == 0 or self.dt is None:
            return None
        tol = 0.5 * self.dt
        oldest = self.pos[0] if n == self.window else 0
        if 1 <= guess <= n:
            i = (oldest + n - guess) % n
            if abs(times[i] - target) <= tol:
                return self.rings[0][i]
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
        return None if best is None else self.rings[0][best]

    def seasonal_reference(self, ts: float, lag: int) -> float | None:
        """Median of the values at the same time of the last ``nseasons`` seasons that are still
        in the window: one odd day (an anomaly, a holiday) neither hides a repeat nor echoes."""
        refs = []
        for k in range(1, self.nseasons + 1):
            r = self.value_at(ts - k * self.season, k * lag)
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

    def inputs(self, ts: float, value: float, last: float | None) -> list[float | None]:
        """The four views' inputs for this point (None where a view has nothing to say yet)."""
        out: list[float | None] = [value, None, None, None]
        if last is not None:
            out[1] = abs(value - last)
        lag = self.season_lag()
        if lag is not None:
            ref = self.seasonal_reference(ts, lag)
            if ref is not None:
                out[2] = value - ref
        k = self.smooth
        vr = self.rings[0]
        n0 = len(vr)
        if n0 >= k - 1:
            acc = value
            p0 = self.pos[0]
            for j in range(1, k):
                acc += vr[(p0 - j) % n0]
            out[3] = acc / k
        return out

    def add(self, c: int, x: float, ts: float) -> None:
        """Store view ``c``'s input after it was judged (a point is judged against the past only)."""
        if c == 0:
            if len(self.rings[0]) < self.window:
                self.times.append(ts)
            else:
                self.times[self.pos[0]] = ts
        self.pos[c] = push(self.rings[c], self.sorted[c], self.pos[c], self.window, x)
