"""``absent`` rules (freshness): fire when no point of (component, metric, labels) arrived for
``for_seconds``; evaluated on the clock by the rule evaluator's timer, cleared when a point arrives.

"Arrived" is read from ``metric_series`` (the latest point of each series, written in the ingest
transaction), so a point that reached another replica, or arrived while this process was down,
counts too; a point seen by this process's evaluator counts at once. A rule that never saw a point
measures the silence from its creation. The state (``last_seen``, ``since``) is one ``rule_states``
row per rule (series key ``""``), so a restart neither re-fires nor forgets a firing.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from app.db.models import DetectionRule, MetricSeries

SERIES_KEY = ""  # one state per rule: every series the rule's labels match feeds it


class AbsentEvaluator:
    def __init__(self, for_seconds: float, since: float, last_seen: float | None = None) -> None:
        self.for_seconds = float(for_seconds)
        self.since = since  # when the rule started watching (its creation)
        self.last_seen = last_seen

    def saw(self, ts: float) -> None:
        if self.last_seen is None or ts > self.last_seen:
            self.last_seen = ts

    def silent_for(self, now: float) -> float:
        return now - (self.last_seen if self.last_seen is not None else self.since)

    def firing(self, now: float) -> bool:
        return self.silent_for(now) > self.for_seconds

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": "absent",
            "for_seconds": self.for_seconds,
            "since": self.since,
            "last_seen": self.last_seen,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> AbsentEvaluator:
        return cls(state["for_seconds"], state["since"], state.get("last_seen"))


async def rule_created_at(session, rule_id: int) -> float:
    created = (
        await session.execute(select(DetectionRule.created_at).where(DetectionRule.id == rule_id))
    ).scalar()
    return created.timestamp() if created is not None else time.time()


async def newest_point(session, component: str, metric_name: str, labels: dict[str, str]) -> float | None:
    """The newest point's time among the series the rule's labels match (subset matcher)."""
    rows = (
        await session.execute(
            select(MetricSeries.labels, MetricSeries.last_ts).where(
                MetricSeries.component == component, MetricSeries.metric_name == metric_name
            )
        )
    ).all()
    times = [
        ts.timestamp()
        for series_labels, ts in rows
        if all((series_labels or {}).get(k) == v for k, v in labels.items())
    ]
    return max(times) if times else None


def describe(metric_name: str, component: str, silent: float) -> str:
    return f"no {metric_name} point from {component} for {_span(silent)}"


def evidence(ev: AbsentEvaluator, now: float) -> dict[str, Any]:
    last = datetime.fromtimestamp(ev.last_seen, UTC).isoformat() if ev.last_seen is not None else None
    return {
        "last_point_at": last,
        "silent_seconds": round(ev.silent_for(now), 3),
        "for_seconds": ev.for_seconds,
        "by_timer": True,
    }


def _span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
