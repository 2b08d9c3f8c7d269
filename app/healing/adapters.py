"""Healing's ports implemented with the real services of other domains (``compose.py`` builds them):

- alerts: ``AlertService.raise_alert`` / ``resolve_fingerprint`` (the component's health alert gets
  ``resolution_action = "restarted by healing attempt N"``), silences through ``SilenceService.matches``;
- monitoring: ``Scheduler.note_recovery_action`` (status ``recovering``, the policy's grace period,
  success_threshold verifies) and ``Scheduler.request_check`` for faster re-checks while an attempt verifies.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from app.alerts.fingerprints import health_fingerprint
from app.alerts.service import AlertService
from app.alerts.silences import SilenceService
from app.healing.ports import HealingPorts, RecordedAlert, exhausted_fingerprint, page_fingerprint

if TYPE_CHECKING:
    from app.config.settings import Settings
    from app.monitoring.scheduler import Scheduler

log = logging.getLogger("pipeline_guard.healing")
RECHECK_EVERY_S = 1.0


class AlertServiceSink:
    """Alerts through the alerts service; the last few are remembered for tests and status."""

    def __init__(self, settings: Settings, keep: int = 200) -> None:
        self.settings = settings
        self.records: list[RecordedAlert] = []
        self.keep = keep

    def _remember(self, kind: str, fields: dict[str, Any]) -> None:
        self.records.append(RecordedAlert(kind, fields))
        del self.records[: -self.keep]

    async def raise_alert(
        self, session, *, component, fingerprint, severity, title, message, incident_id=None, labels=None
    ) -> None:
        self._remember(
            "raise",
            {
                "component": component,
                "fingerprint": fingerprint,
                "severity": severity,
                "title": title,
                "message": message,
                "incident_id": incident_id,
            },
        )
        await AlertService(session, self.settings).raise_alert(
            component=component,
            severity=severity,
            message=f"{title}: {message}",
            fingerprint=fingerprint,
            labels=labels,
            incident_id=incident_id,
            source="healing",
            metadata={"title": title},
        )

    async def is_active(self, session, fingerprint: str) -> bool:
        alerts = AlertService(session, self.settings).alerts
        return await alerts.active_by_fingerprint(fingerprint, for_update=False) is not None

    async def resolve(
        self, session, *, fingerprint=None, component=None, incident_id=None, resolution_action
    ) -> None:
        self._remember(
            "resolve",
            {
                "fingerprint": fingerprint,
                "component": component,
                "incident_id": incident_id,
                "resolution_action": resolution_action,
            },
        )
        service = AlertService(session, self.settings)
        fingerprints = [fingerprint] if fingerprint else []
        if fingerprint is None and component is not None:  # a heal: the health alert and healing's own
            fingerprints.append(health_fingerprint(component))
            fingerprints.append(page_fingerprint(component, f"i:{incident_id}"))
            if incident_id is not None:  # healed after all (by hand, once escalated): a human is not needed
                fingerprints.append(exhausted_fingerprint(component, incident_id))
        for fp in fingerprints:
            await service.resolve_fingerprint(fp, resolution_action=resolution_action, actor="healing")


class SilenceServiceChecker:
    async def is_silenced(self, session, component: str, labels: dict[str, str], at: datetime) -> bool:
        return await SilenceService(session).matches(component, labels, at)


class SchedulerRecoveryNotifier:
    """Tells the scheduler when it checks here (``is_open``; it is built in every runtime).
    ``closed_incidents``: the ids healing saw close (``incidents.py`` adds them); a re-check
    burst stops when its incident is among them. ``tasks``: the engine's, so draining waits for them."""

    def __init__(self, scheduler: Scheduler, closed_incidents: set[int], tasks: set[asyncio.Task]) -> None:
        self.scheduler = scheduler
        self.closed = closed_incidents
        self.tasks = tasks

    def action_starting(self, *, component_id, until) -> None:
        if component_id is not None:
            self.scheduler.note_action_started(component_id, until)

    def action_ended(self, *, component_id) -> None:
        if component_id is not None:
            self.scheduler.note_action_ended(component_id)

    async def action_ran(
        self, *, component, component_id, incident_id, action, grace_s, recheck_until_s
    ) -> None:
        if component_id is None or not self.scheduler.is_open:
            return  # nothing checks here (a test that runs no scheduler): nothing to tell
        scheduler = self.scheduler
        try:
            await scheduler.note_recovery_action(component_id, action, grace_s=grace_s)
        except Exception:
            log.exception("healing: monitoring could not note the recovery action on %s", component)
        task = asyncio.create_task(
            self._recheck(component_id, incident_id, recheck_until_s), name=f"healing:recheck:{component}"
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _recheck(self, component_id: int, incident_id: int | None, until_s: float) -> None:
        """Faster re-checks while verifying: one check per second until the incident closes."""
        deadline = time.monotonic() + until_s
        while time.monotonic() < deadline and incident_id not in self.closed:
            self.scheduler.request_check(component_id)
            await asyncio.sleep(RECHECK_EVERY_S)


def build_ports(
    settings: Settings, scheduler: Scheduler, closed_incidents: set[int], tasks: set[asyncio.Task]
) -> HealingPorts:
    return HealingPorts(
        alerts=AlertServiceSink(settings),
        silences=SilenceServiceChecker(),
        recovery=SchedulerRecoveryNotifier(scheduler, closed_incidents, tasks),
    )


__all__ = [
    "AlertServiceSink",
    "RecordedAlert",
    "SchedulerRecoveryNotifier",
    "SilenceServiceChecker",
    "build_ports",
]
