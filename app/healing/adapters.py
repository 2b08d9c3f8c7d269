"""Adapters from healing's ports to the real services of other domains.

- alerts: ``AlertService.raise_alert`` / ``resolve_fingerprint`` (the component's health alert gets
  ``resolution_action = "restarted by healing attempt N"``), silences through ``SilenceService.matches``;
- monitoring: ``Scheduler.note_recovery_action`` (status ``recovering``, the policy's grace period,
  success_threshold verifies) and ``Scheduler.request_check`` for faster re-checks while an attempt verifies.
A domain may also publish its own implementation in ``state.extras`` under ``healing.alert_sink``,
``healing.silence_checker`` or ``healing.recovery_notifier`` before the engine is built (tests do).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from app.healing.ports import HealingPorts, LogAlertSink, NoSilences, RecordedAlert, StateRecoveryNotifier

if TYPE_CHECKING:
    from app.platform.lifespan import GuardState

log = logging.getLogger("pipeline_guard.healing")
RECHECK_EVERY_S = 1.0


class AlertServiceSink(LogAlertSink):
    """Alerts through the alerts service (and remembered, like the log sink, for tests and status)."""

    def __init__(self, settings) -> None:
        super().__init__()
        self.settings = settings

    async def raise_alert(self, session, *, component, fingerprint, severity, title, message, incident_id=None,
                          labels=None) -> None:
        from app.alerts.service import AlertService

        self._remember("raise", {"component": component, "fingerprint": fingerprint, "severity": severity,
                                 "title": title, "message": message, "incident_id": incident_id})
        await AlertService(session, self.settings).raise_alert(
            component=component, severity=severity, message=f"{title}: {message}", fingerprint=fingerprint,
            labels=labels, incident_id=incident_id, source="healing", metadata={"title": title},
        )

    async def resolve(self, session, *, fingerprint=None, component=None, incident_id=None,
                      resolution_action) -> None:
        from app.alerts.service import AlertService
        from app.alerts.subscribers import health_fingerprint

        self._remember("resolve", {"fingerprint": fingerprint, "component": component, "incident_id": incident_id,
                                   "resolution_action": resolution_action})
        service = AlertService(session, self.settings)
        fingerprints = [fingerprint] if fingerprint else []
        if fingerprint is None and component is not None:  # a heal: the health alert and healing's own
            fingerprints.append(health_fingerprint(component))
            fingerprints.append(f"healing-notify:{component}:i:{incident_id}")
        for fp in fingerprints:
            await service.resolve_fingerprint(fp, resolution_action=resolution_action, actor="healing")


class SilenceServiceChecker:
    async def is_silenced(self, session, component: str, labels: dict[str, str]) -> bool:
        from app.alerts.silences import SilenceService

        return await SilenceService(session).matches(component, labels)


class SchedulerRecoveryNotifier:
    def __init__(self, state: GuardState, tasks: set[asyncio.Task]) -> None:
        self.state = state
        self.tasks = tasks

    def action_starting(self, *, component_id, until) -> None:
        scheduler = self.state.extras.get("scheduler")
        if scheduler is not None and component_id is not None:
            scheduler.note_action_started(component_id, until)

    def action_failed(self, *, component_id) -> None:
        scheduler = self.state.extras.get("scheduler")
        if scheduler is not None and component_id is not None:
            scheduler.note_action_failed(component_id)

    async def action_ran(self, *, component, component_id, incident_id, action, grace_s, recheck_until_s) -> None:
        scheduler = self.state.extras.get("scheduler")
        if scheduler is None or component_id is None:
            return
        try:
            await scheduler.note_recovery_action(component_id, action, grace_s=grace_s)
        except Exception:
            log.exception("healing: monitoring could not note the recovery action on %s", component)
        task = asyncio.create_task(self._recheck(scheduler, component_id, incident_id, recheck_until_s),
                                   name=f"healing:recheck:{component}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _recheck(self, scheduler, component_id: int, incident_id: int | None, until_s: float) -> None:
        """Faster re-checks while verifying: one check per second until the incident closes."""
        closed: set[int] = self.state.extras.setdefault("healing.closed_incidents", set())
        deadline = time.monotonic() + until_s
        while time.monotonic() < deadline and incident_id not in closed:
            scheduler.request_check(component_id)
            await asyncio.sleep(RECHECK_EVERY_S)


def build_ports(state: GuardState, tasks: set[asyncio.Task]) -> HealingPorts:
    extras = state.extras
    alerts: Any = extras.get("healing.alert_sink")
    if alerts is None:
        try:
            import app.alerts.service

            alerts = AlertServiceSink(state.settings)
        except ImportError:
            alerts = LogAlertSink()
    silences: Any = extras.get("healing.silence_checker")
    if silences is None:
        try:
            import app.alerts.silences  # noqa: F401

            silences = SilenceServiceChecker()
        except ImportError:
            silences = NoSilences()
    recovery = extras.get("healing.recovery_notifier") or (
        SchedulerRecoveryNotifier(state, tasks) if "scheduler" in extras else StateRecoveryNotifier(extras)
    )
    return HealingPorts(alerts=alerts, silences=silences, recovery=recovery)


__all__ = ["AlertServiceSink", "RecordedAlert", "SchedulerRecoveryNotifier", "SilenceServiceChecker", "build_ports"]
