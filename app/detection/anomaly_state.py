"""Saving and restoring an ``AnomalyDetector`` (``rule_states`` keeps it per series, so a restart does
not forget a baseline): the JSON-able snapshot, its checks, and the migration of older layouts.
Mixed into ``AnomalyDetector``; it reads and writes that class's state attributes."""

from __future__ import annotations

from typing import Any, Self


class PersistedState:
    def to_state(self) -> dict[str, Any]:
        """JSON-able snapshot. Rings are stored as they are (with their write positions) so a
        restored detector continues with bit-identical scores."""
        return {
            "kind": "robust_record",
            "version": self.VERSION,
            "params": self.params(),
            "count": self.count,
            "last_timestamp": self.last_timestamp,
            "last_value": self.last_value,
            "dt": self._dt,
            "dt_votes": self._dt_votes,
            "rings": [list(r) for r in self._rings],
            "times": list(self._times),
            "positions": list(self._pos),
            "block_max": [list(b) for b in self._bmax],
            "current_max": list(self._cur),
            "block_fill": self._bn,
            "peak": self._peak,
            "last_raw": self.last_raw, "last_score": self.last_score,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        if state.get("kind") != "robust_record":
            raise ValueError("unsupported detector state")
        version = state.get("version")
        if version == 2:
            return cls._from_v2(state)
        if version != cls.VERSION:
            raise ValueError("unsupported detector state")
        det = cls(**state["params"])
        det.count = int(state["count"])
        det.last_timestamp = state["last_timestamp"]
        det.last_value = state["last_value"]
        det._dt = None if state["dt"] is None else float(state["dt"])
        det._dt_votes = int(state["dt_votes"])
        det._rings = [[float(v) for v in r] for r in state["rings"]]
        det._sorted = [sorted(r) for r in det._rings]
        det._times = [float(t) for t in state["times"]]
        det._pos = [int(p) for p in state["positions"]]
        det._bmax = [[float(v) for v in b] for b in state["block_max"]]
        det._cur = [float(v) for v in state["current_max"]]
        det._bn = int(state["block_fill"])
        det._peak = float(state["peak"])
        det.last_raw, det.last_score = float(state["last_raw"]), float(state["last_score"])
        if (len(det._rings) != det.N_VIEWS or len(det._bmax) != det.N_VIEWS or len(det._times) != len(det._rings[0])
                or not 0 <= det._pos[0] < max(det.window, 1)):
            raise ValueError("inconsistent detector state")
        det._refresh_records()
        return det

    @classmethod
    def _from_v2(cls, state: dict[str, Any]) -> Self:
        """Migrate a version-2 state (three views, no timestamps): replay its value ring, in time
        order and at its cadence, through a fresh detector, so every view (the new ones too) and
        every record is rebuilt from the same last ``window`` points; then carry over the count
        (warm-up) and the refractory peak. Scores afterwards are those of a detector that started
        ``window`` points ago, which is all the history a version-3 detector keeps anyway."""
        det = cls(**state["params"])
        ring = [float(v) for v in state["rings"][0]]
        pos = int(state["positions"][0])
        values = ring[pos:] + ring[:pos] if len(ring) >= det.window else ring
        last_ts = state["last_timestamp"]
        dt = state["dt"] if state["dt"] else 1.0
        if values and last_ts is not None:
            n = len(values)
            for i, v in enumerate(values):
                det.score(float(last_ts) - (n - 1 - i) * float(dt), v)
        det.count = max(int(state["count"]), det.count)
        det._peak = float(state["peak"])
        det.last_raw, det.last_score = float(state["last_raw"]), float(state["last_score"])
        return det
