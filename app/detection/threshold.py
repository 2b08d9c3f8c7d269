"""Threshold rule with a ``for`` duration (Prometheus semantics): fire only after the condition
has held continuously for ``for_seconds``; any point where it does not hold resets the clock."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
    "eq": operator.eq,
    "ne": operator.ne,
}


def _as_seconds(timestamp: datetime | float) -> float:
    return timestamp.timestamp() if isinstance(timestamp, datetime) else float(timestamp)


@dataclass(frozen=True)
class ThresholdEvaluation:
    firing: bool
    holding: bool  # condition true at this point (maybe not yet for long enough)
    value: float
    threshold: float
    operator: str
    held_seconds: float
    for_seconds: float
    since: float | None  # when the condition started holding


class ThresholdEvaluator:
    def __init__(self, op: str, value: float, for_seconds: float = 0.0) -> None:
        if op not in OPERATORS:
            raise ValueError(f"operator must be one of {sorted(OPERATORS)}")
        if for_seconds < 0:
            raise ValueError("for_seconds must be >= 0")
        self.op = op
        self.value = float(value)
        self.for_seconds = float(for_seconds)
        self.since: float | None = None
        self.last_timestamp: float | None = None

    def evaluate(self, timestamp: datetime | float, value: float) -> ThresholdEvaluation:
        ts = _as_seconds(timestamp)
        holding = OPERATORS[self.op](float(value), self.value)
        if not holding:
            self.since = None
        elif self.since is None:
            self.since = ts
        self.last_timestamp = ts
        held = ts - self.since if self.since is not None else 0.0
        return ThresholdEvaluation(
            firing=holding and held >= self.for_seconds,
            holding=holding,
            value=float(value),
            threshold=self.value,
            operator=self.op,
            held_seconds=held,
            for_seconds=self.for_seconds,
            since=self.since,
        )

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": "threshold",
            "op": self.op,
            "value": self.value,
            "for_seconds": self.for_seconds,
            "since": self.since,
            "last_timestamp": self.last_timestamp,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ThresholdEvaluator:
        ev = cls(state["op"], state["value"], state["for_seconds"])
        ev.since = state.get("since")
        ev.last_timestamp = state.get("last_timestamp")
        return ev
