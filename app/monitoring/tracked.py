"""What the scheduler remembers about each component between flushes (`Tracked`), and the items a
flush writes: a probe's result (`Observation`) and the start of a recovery action (`RecoveryMark`).

`Tracked` is advanced only after a flush's commit (`recorder.write_batch` works on copies).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from app.checks.base import CheckResult
from app.db.models import Component
from app.db.types import utcnow
from app.monitoring import state_machine as sm

RESULT_IDS_KEPT = 16


class Observation(NamedTuple):
    """One check result waiting to be written (a tuple: one is created per probe)."""

    component_id: int
    kind: str
    result: CheckResult


class RecoveryMark(NamedTuple):
    component_id: int
    action: str
    at: datetime
    grace_s: float | None = None  # the policy's grace_period; None: the monitoring default


@dataclass
class Tracked:
    """What the scheduler remembers about one component between flushes."""

    component_id: int
    name: str
    critical: bool
    labels: dict[str, str]
    thresholds: sm.Thresholds
    machine: sm.MachineState
    incident_id: int | None = None
    incident_worst: str | None = None
    last_check_at: datetime | None = None
    last_outcome: str | None = None
    last_detail: str | None = None
    last_latency_ms: float | None = None
    recent_result_ids: deque[int] = field(default_factory=lambda: deque(maxlen=RESULT_IDS_KEPT))

    @classmethod
    def restore(cls, component: Component, thresholds: sm.Thresholds) -> Tracked:
        """The component as last persisted (`component.state`), or a fresh one when it has no state row."""
        labels = dict(component.labels or {})
        st = component.state
        if st is None:
            machine = sm.MachineState(status_since=utcnow())
            return cls(component.id, component.name, component.critical, labels, thresholds, machine)
        machine = sm.MachineState(
            status=st.status,
            status_since=st.status_since,
            consecutive_failures=st.consecutive_failures,
            consecutive_successes=st.consecutive_successes,
            recent=st.recent_outcomes or "",
            grace_until=st.grace_until,
        )
        return cls(
            component.id,
            component.name,
            component.critical,
            labels,
            thresholds,
            machine,
            incident_id=st.current_incident_id,
            incident_worst=st.status if st.current_incident_id else None,
            last_check_at=st.last_check_at,
            last_outcome=st.last_outcome,
            last_detail=st.last_detail,
            last_latency_ms=st.last_latency_ms,
        )

    def copy(self) -> Tracked:
        # Once per component per flush: a plain __dict__ copy (dataclasses.replace is much slower).
        new = object.__new__(Tracked)
        new.__dict__.update(self.__dict__)
        new.recent_result_ids = deque(self.recent_result_ids, maxlen=RESULT_IDS_KEPT)
        return new
