"""What healing needs from the other domains, as small interfaces.

The engine depends only on these. ``HealingPorts`` holds the defaults (log-only alerts, no silences,
no monitoring hooks); ``app/healing/adapters.py`` swaps in the real monitoring and alerts services when
they are present. Every method that takes a session runs inside the caller's transaction and only
flushes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

log = logging.getLogger("pipeline_guard.healing")


class AlertSink(Protocol):
    async def raise_alert(self, session: AsyncSession, *, component: str, fingerprint: str, severity: str,
                          title: str, message: str, incident_id: int | None = None,
                          labels: dict[str, str] | None = None) -> None: ...

    async def resolve(self, session: AsyncSession, *, fingerprint: str | None = None, component: str | None = None,
                      incident_id: int | None = None, resolution_action: str) -> None: ...


class SilenceChecker(Protocol):
    async def is_silenced(self, session: AsyncSession, component: str, labels: dict[str, str]) -> bool: ...


class RecoveryNotifier(Protocol):
    """Tells monitoring that an action ran (called after the attempt's commit, outside any
    transaction): grace period (failures do not count, status ``recovering``) and faster re-checks
    until ``recheck_until_s`` seconds from now or the incident closes."""

    async def action_ran(self, *, component: str, component_id: int | None, incident_id: int | None, action: str,
                         grace_s: float, recheck_until_s: float) -> None: ...


@dataclass
class RecordedAlert:
    kind: str  # raise | resolve
    fields: dict[str, Any]


class LogAlertSink:
    """Default sink until the alerts service is wired: logs, and keeps the last few for the API/tests."""

    def __init__(self, keep: int = 200) -> None:
        self.records: list[RecordedAlert] = []
        self.keep = keep

    def _remember(self, kind: str, fields: dict[str, Any]) -> None:
        self.records.append(RecordedAlert(kind, fields))
        del self.records[:-self.keep]

    async def raise_alert(self, session, *, component, fingerprint, severity, title, message, incident_id=None,
                          labels=None) -> None:
        log.warning("healing alert [%s] %s: %s — %s", severity, component, title, message)
        self._remember("raise", {"component": component, "fingerprint": fingerprint, "severity": severity,
                                 "title": title, "message": message, "incident_id": incident_id})

    async def resolve(self, session, *, fingerprint=None, component=None, incident_id=None,
                      resolution_action) -> None:
        log.info("healing resolved %s (incident %s): %s", fingerprint or component, incident_id, resolution_action)
        self._remember("resolve", {"fingerprint": fingerprint, "component": component, "incident_id": incident_id,
                                   "resolution_action": resolution_action})


class NoSilences:
    async def is_silenced(self, session, component, labels) -> bool:
        return False


class StateRecoveryNotifier:
    """Fallback without a monitoring scheduler: records the grace deadline in
    ``state.extras['recovery_grace']`` (component -> monotonic deadline)."""

    def __init__(self, extras: dict[str, Any]) -> None:
        self.extras = extras

    async def action_ran(self, *, component, component_id, incident_id, action, grace_s, recheck_until_s) -> None:
        import time

        self.extras.setdefault("recovery_grace", {})[component] = time.monotonic() + grace_s


@dataclass
class HealingPorts:
    alerts: AlertSink = field(default_factory=LogAlertSink)
    silences: SilenceChecker = field(default_factory=NoSilences)
    recovery: RecoveryNotifier | None = None
