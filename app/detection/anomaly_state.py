"""Saving and restoring an ``AnomalyDetector`` (``rule_states`` keeps it per series, so a restart does
not forget a baseline): the JSON-able snapshot, its checks, and the migration of older layouts.
Mixed into ``AnomalyDetector``; it reads and writes that class's state attributes."""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Self

from app.detection.anomaly_views import Views, deviation


def _in_time_order(ring: list[float], pos: int, cap: int) -> list[float]:
    return ring[pos:] + ring[:pos] if len(ring) >= cap else list(ring)


class PersistedState:
    # The detector's state this mixin reads and writes (``AnomalyDetector`` defines it).
    VERSION: ClassVar[int]
    N_VIEWS: ClassVar[int]
    window: int
    count: int
    last_timestamp: float | None
    last_value: float | None
    last_raw: float
    last_score: float
    _views: Views
    _bmax: list[list[float]]
    _cur: list[float]
    _bn: int
    _peak: float

    if TYPE_CHECKING:

        def __init__(self, **params: Any) -> None: ...
        def params(self) -> dict[str, Any]: ...
        def score(self, timestamp: datetime | float, value: float) -> float: ...
        def _refresh_records(self) -> None: ...

    def to_state(self) -> dict[str, Any]:
        """JSON-able snapshot. Rings are stored as they are (with their write positions) so a
        restored detector continues with bit-identical scores."""
        v = self._views
        return {
            "kind": "robust_record",
            "version": self.VERSION,
            "params": self.params(),
            "count": self.count,
            "last_timestamp": self.last_timestamp,
            "last_value": self.last_value,
            "dt": v.dt,
            "dt_votes": v.dt_votes,
            "rings": [list(r) for r in v.rings],
            "times": list(v.times),
            "positions": list(v.pos),
            "block_max": [list(b) for b in self._bmax],
            "current_max": list(self._cur),
            "block_fill": self._bn,
            "peak": self._peak,
            "last_raw": self.last_raw,
            "last_score": self.last_score,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        if state.get("kind") != "robust_record":
            raise ValueError("unsupported detector state")
        version = state.get("version")
        if version == 2:
            return cls._from_v2(state)
        if version == 3:
            return cls._from_v3(state)
        if version != cls.VERSION:
            raise ValueError("unsupported detector state")
        return cls._restore(state, state["params"])

    @classmethod
    def _restore(cls, state: dict[str, Any], params: dict[str, Any]) -> Self:
        det = cls(**params)
        v = det._views
        det.count = int(state["count"])
        det.last_timestamp = state["last_timestamp"]
        det.last_value = state["last_value"]
        v.dt = None if state["dt"] is None else float(state["dt"])
        v.dt_votes = int(state["dt_votes"])
        v.rings = [[float(x) for x in r] for r in state["rings"]]
        v.sorted = [sorted(r) for r in v.rings]
        v.times = [float(t) for t in state["times"]]
        v.pos = [int(p) for p in state["positions"]]
        det._bmax = [[float(x) for x in b] for b in state["block_max"]]
        det._cur = [float(x) for x in state["current_max"]]
        det._bn = int(state["block_fill"])
        det._peak = float(state["peak"])
        det.last_raw, det.last_score = float(state["last_raw"]), float(state["last_score"])
        if (
            len(v.rings) != det.N_VIEWS
            or len(det._bmax) != det.N_VIEWS
            or len(v.times) != len(v.rings[0])
            or any(len(r) > det.window for r in v.rings)
            or not 0 <= v.pos[0] < max(det.window, 1)
        ):
            raise ValueError("inconsistent detector state")
        det._refresh_records()
        return det

    @classmethod
    def _from_v3(cls, state: dict[str, Any]) -> Self:
        """Migrate a version-3 state (the same layout, but block maxima kept as surprises, not
        deviations): each bar becomes the deviation that has that surprise against the view's
        current spread, which is what the bar means to the next point; everything else carries
        over as it is."""
        det = cls._restore(state, state["params"])
        for c, srt in enumerate(det._views.sorted):
            sp = deviation(srt, 0.0)[1] if srt else 1.0
            det._bmax[c] = [math.expm1(b) * sp for b in det._bmax[c]]
            det._cur[c] = math.expm1(det._cur[c]) * sp
        det._refresh_records()
        return det

    @classmethod
    def _from_v2(cls, state: dict[str, Any]) -> Self:
        """Migrate a version-2 state (three views, no timestamps): replay its value ring, in time
        order and at its cadence, through a fresh detector, so every view (the new ones too) and
        every record is rebuilt from the same last points; then carry over the count (warm-up)
        and the refractory peak. Scores afterwards are those of a detector that started that many
        points ago."""
        det = cls(**state["params"])
        values = _in_time_order([float(x) for x in state["rings"][0]], int(state["positions"][0]), det.window)
        last_ts = state["last_timestamp"]
        dt = state["dt"] if state["dt"] else 1.0
        if values and last_ts is not None:
            n = len(values)
            for i, x in enumerate(values):
                det.score(float(last_ts) - (n - 1 - i) * float(dt), x)
        det.count = max(int(state["count"]), det.count)
        det._peak = float(state["peak"])
        det.last_raw, det.last_score = float(state["last_raw"]), float(state["last_score"])
        return det
