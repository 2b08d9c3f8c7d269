"""What healing needs from the other domains, as small interfaces.

The engine depends only on these; ``app/healing/adapters.py`` implements them with the alerts and
monitoring services, and ``app/platform/compose.py`` hands them to the engine. Every method that takes
a session runs inside the caller's transaction and only flushes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession


def page_fingerprint(component: str, incident_key: str) -> str:
    """The "human needed" alert an escalating strategy (``notify_only``) raises for an incident
    (``incident_key``: ``i:<incident id>``)."""
    return f"healing-notify:{component}:{incident_key}"


def exhausted_fingerprint(component: str, incident_id: int) -> str:
    """The "healing exhausted: human needed" alert of an incident whose attempts are spent."""
    return f"healing-exhausted:{component}:{incident_id}"


class AlertSink(Protocol):
    async def is_active(self, session: AsyncSession, fingerprint: str) -> bool:
        """Whether an alert with this fingerprint is open (firing, acknowledged or silenced)."""
        ...

    async def raise_alert(
        self,
        session: AsyncSession,
        *,
        component: str,
        fingerprint: str,
        severity: str,
        title: str,
        message: str,
        incident_id: int | None = None,
        labels: dict[str, str] | None = None,
    ) -> None: ...

    async def resolve(
        self,
        session: AsyncSession,
        *,
        fingerprint: str | None = None,
        component: str | None = None,
        incident_id: int | None = None,
        resolution_action: str,
    ) -> None: ...


class SilenceChecker(Protocol):
    async def is_silenced(
        self, session: AsyncSession, component: str, labels: dict[str, str], at: datetime
    ) -> bool:
        """Whether a silence covers the component at ``at``: the decision's instant, the one its
        attempt records as ``started_at`` (so no attempt can say it started inside a silence)."""
        ...


class RecoveryNotifier(Protocol):
    """Tells monitoring that an action ran (called after the attempt's commit, outside any
    transaction): grace period (failures do not count, status ``recovering``) and faster re-checks
    until ``recheck_until_s`` seconds from now or the incident closes."""

    def action_starting(self, *, component_id: int | None, until: datetime) -> None: ...

    def action_ended(self, *, component_id: int | None) -> None:
        """The action is over and nothing is to verify (it failed, or its incident closed while it
        ran): the component's failures count again at once."""
        ...

    async def action_ran(
        self,
        *,
        component: str,
        component_id: int | None,
        incident_id: int | None,
        action: str,
        grace_s: float,
        recheck_until_s: float,
    ) -> None: ...


@dataclass
class RecordedAlert:
    kind: str  # raise | resolve
    fields: dict[str, Any]


@dataclass
class HealingPorts:
    alerts: AlertSink
    silences: SilenceChecker
    recovery: RecoveryNotifier
