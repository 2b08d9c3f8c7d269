"""A batch job's rerun holds its verification open (docs/LIFECYCLE.md rule 12).

A heartbeat-checked component is judged on the pings received since its recovery action started
(``app/checks/heartbeat.py``). A rerun that pinged ``start`` since then is running, not failed, until
its allowed runtime is over (the check's ``max_runtime_s``, else its period and grace): a
verification whose deadline comes first waits for it, so no second action starts while the run the
first one started may still end well.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.checks.base import CheckConfigError
from app.checks.heartbeat import run_deadline


def rerun_may_run_until(
    check: dict[str, Any] | None,
    action_at: datetime | None,
    last_ping_status: str | None,
    last_start_at: datetime | None,
) -> datetime | None:
    """Until when the run started since the action (``action_at``: its attempt's ``started_at``, a
    guard's clock like the pings') may still end well; None when the component is no batch job or has
    no run in progress that started since the action."""
    if not check or check.get("kind") != "heartbeat" or action_at is None:
        return None
    if last_ping_status != "start" or last_start_at is None or last_start_at < action_at:
        return None
    try:
        return run_deadline(check, last_start_at)
    except CheckConfigError:
        return None  # an invalid stored check: its own check reports it
