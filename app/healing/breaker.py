"""Circuit breaker per component: N incidents that healing could not fix within a window open it;
an open breaker stops automatic healing until an operator re-arms it or the window has passed."""

from __future__ import annotations

from datetime import datetime, timedelta

from app.db.models.healing import HealingBudget
from app.healing.policy import Policy


def _recent(budget: HealingBudget, window_s: float, now: datetime) -> list[str]:
    cutoff = now - timedelta(seconds=window_s)
    return [ts for ts in (budget.failed_incidents or []) if datetime.fromisoformat(ts) > cutoff]


def record_failed_incident(budget: HealingBudget, policy: Policy, now: datetime) -> bool:
    """Count one incident healing gave up on. Returns True when this opens the breaker."""
    budget.failed_incidents = [*_recent(budget, policy.breaker_window, now), now.isoformat()]
    if not budget.breaker_open and len(budget.failed_incidents) >= policy.breaker_threshold:
        budget.breaker_open = True
        budget.breaker_opened_at = now
        budget.breaker_rearm_at = now + timedelta(seconds=policy.breaker_window)
        return True
    return False


def rearm_time(budget: HealingBudget) -> datetime:
    """When an open breaker re-arms by itself (set by `record_failed_incident` as it opens)."""
    if budget.breaker_rearm_at is None:
        raise ValueError("the breaker is not open")
    return budget.breaker_rearm_at


def rearm(budget: HealingBudget) -> bool:
    """Close the breaker and forget the failures that opened it. Returns whether it was open."""
    was_open = budget.breaker_open
    budget.breaker_open = False
    budget.breaker_opened_at = None
    budget.breaker_rearm_at = None
    budget.failed_incidents = []
    budget.backoff_level = 0
    budget.backoff_until = None
    return was_open
