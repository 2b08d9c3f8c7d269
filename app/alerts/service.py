"""The alert lifecycle: dedup by fingerprint, cooldown, ack (with snooze), silences, resolve.

Every change that should tell someone writes its outbox rows in the same transaction (the caller's),
so an alert and its notifications commit or vanish together. Only flushes.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts.repository import AlertRepository
from app.alerts.silences import SilenceService, silence_matches
from app.config.settings import Settings
from app.core.errors import Conflict, NotFound, ValidationFailed
from app.db.models import Alert, AlertStatus, Severity
from app.db.models.alerts import SEVERITY_RANK
from app.db.types import utcnow
from app.notify.service import NotificationService

log = logging.getLogger("pipeline_guard.alerts")

MAX_MESSAGE = 4000


@dataclass(frozen=True)
class RaiseResult:
    alert: Alert
    created: bool  # a new alert (False: a repeat of an active one, count grew)
    notified: bool  # outbox rows were written for this call


def default_fingerprint(component: str, source: str, message: str) -> str:
    digest = hashlib.sha256(f"{component}\x00{source}\x00{message}".encode()).hexdigest()[:32]
    return f"{source}:{component}:{digest}"


def _severity(value: str) -> str:
    try:
        return Severity(value).value
    except ValueError:
        raise ValidationFailed(f"unknown severity {value!r}; use info, warning or critical") from None


class AlertService:
    def __init__(self, session: AsyncSession, settings: Settings):
        self.session = session
        self.settings = settings
        self.alerts = AlertRepository(session)
        self.silences = SilenceService(session)
        self.notifications = NotificationService(session)

    @property
    def cooldown(self) -> timedelta:
        return timedelta(seconds=self.settings.alerting.cooldown)

    # --- raising ----------------------------------------------------------------------------------
    async def raise_alert(
        self,
        *,
        component: str,
        severity: str,
        message: str,
        fingerprint: str | None = None,
        component_id: int | None = None,
        labels: dict[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
        incident_id: int | None = None,
        source: str = "api",
        at: datetime | None = None,
        quiet: bool = False,
        quiet_reason: str | None = None,
    ) -> RaiseResult:
        """Open an alert, or refresh the active one with the same fingerprint (count, last_seen).

        A still-firing alert is re-notified at most every ``alerting.cooldown``; a higher severity is
        notified at once; a silenced or acknowledged alert stays quiet. ``quiet``: the condition is
        attributed to (or held for) an upstream root cause: recorded, not notified
        (``release_held`` notifies it if it becomes its own).
        """
        now = at or utcnow()
        severity = _severity(severity)
        message = message[:MAX_MESSAGE]
        fingerprint = fingerprint or default_fingerprint(component, source, message)
        labels = dict(labels or {})
        existing = await self.alerts.active_by_fingerprint(fingerprint)
        if existing is None:
            created = await self._open(
                component=component,
                component_id=component_id,
                severity=severity,
                message=message,
                fingerprint=fingerprint,
                labels=labels,
                metadata=metadata,
                incident_id=incident_id,
                source=source,
                now=now,
                quiet=quiet,
                quiet_reason=quiet_reason,
            )
            if created is not None:
                return created
            # Another transaction opened the same condition first: this is a repeat of it.
            existing = await self.alerts.active_by_fingerprint(fingerprint)
            if existing is None:
                raise Conflict(f"alert {fingerprint!r} was raised and resolved by another transaction")
        return await self._repeat(
            existing,
            severity=severity,
            message=message,
            labels=labels,
            metadata=metadata,
            incident_id=incident_id,
            component_id=component_id,
            now=now,
            quiet=quiet,
        )

    async def _open(
        self,
        *,
        component: str,
        component_id: int | None,
        severity: str,
        message: str,
        fingerprint: str,
        labels: dict[str, str],
        metadata: dict[str, Any] | None,
        incident_id: int | None,
        source: str,
        now: datetime,
        quiet: bool,
        quiet_reason: str | None,
    ) -> RaiseResult | None:
        """A new alert, inserted as it ends up (silenced, held or notified: what decides that is read
        first), then its history and outbox rows in one flush. None when another transaction holds
        an active alert with this fingerprint."""
        silence = await self.silences.matching(component, labels, now)
        notifying = silence is None and not quiet
        channels = await self.notifications.enabled_channels() if notifying else []
        alert = await self.alerts.insert_unless_active(
            {
                "fingerprint": fingerprint,
                "component": component,
                "component_id": component_id,
                "severity": severity,
                "message": message,
                "source": source,
                "labels": labels,
                "meta": dict(metadata or {}),
                "incident_id": incident_id,
                "first_seen": now,
                "last_seen": now,
                "count": 1,
                "status": AlertStatus.SILENCED if silence is not None else AlertStatus.FIRING,
                "last_notified_at": now if notifying else None,
            }
        )
        if alert is None:
            return None
        self.alerts.record(alert, "raised", actor=source, detail=message, at=now)
        if silence is not None:
            self.alerts.record(alert, "silenced", detail=f"silence {silence.id}", at=now)
        elif quiet:
            self.alerts.record(alert, "held", detail=quiet_reason or self._held_detail(alert), at=now)
        rows = self.notifications.outbox_rows(alert, "firing", channels) if notifying else []
        if rows:
            self.alerts.record(alert, "notified", detail=f"firing to {len(rows)} channel(s)", at=now)
        await self.session.flush()
        return RaiseResult(alert, created=True, notified=bool(rows))

    @staticmethod
    def _held_detail(alert: Alert) -> str:
        root = (alert.meta or {}).get("caused_by")
        return f"caused by {root}: not notified" if root else "held until its upstream is known healthy"

    async def release_held(self, fingerprint: str, at: datetime | None = None) -> bool:
        """A held condition became its own (root recovered and it still fails, or its upstream is
        healthy): drop the attribution and notify it now. Returns whether a notification was written."""
        now = at or utcnow()
        alert = await self.alerts.active_by_fingerprint(fingerprint)
        if alert is None:
            return False
        alert.meta = {k: v for k, v in (alert.meta or {}).items() if k != "caused_by"}
        self.alerts.record(alert, "released", detail="no unhealthy upstream: its own incident", at=now)
        if alert.status != AlertStatus.FIRING or alert.last_notified_at is not None:
            # Not firing, or notified before it was attributed (its component's own incident, whose
            # upstream failed while its action was verified): people were told already.
            await self.session.flush()
            return False
        return await self._notify(alert, "firing", now)

    async def _repeat(
        self,
        alert: Alert,
        *,
        severity: str,
        message: str,
        labels: dict[str, str],
        metadata: dict[str, Any] | None,
        incident_id: int | None,
        component_id: int | None,
        now: datetime,
        quiet: bool = False,
    ) -> RaiseResult:
        alert.count += 1
        alert.last_seen = max(alert.last_seen, now)
        alert.message = message
        if labels:
            alert.labels = {**(alert.labels or {}), **labels}
        if metadata:
            alert.meta = {**(alert.meta or {}), **metadata}
        if incident_id is not None:
            alert.incident_id = incident_id
        if component_id is not None and alert.component_id is None:
            alert.component_id = component_id
        upgraded = SEVERITY_RANK[Severity(severity)] > SEVERITY_RANK[Severity(alert.severity)]
        if upgraded:
            self.alerts.record(alert, "severity", detail=f"{alert.severity} -> {severity}", at=now)
        alert.severity = severity
        notified = False
        if (
            alert.status == AlertStatus.ACKNOWLEDGED
            and alert.acknowledged_until
            and alert.acknowledged_until <= now
        ):
            notified = await self._reopen(alert, now, reason="acknowledgement expired")
        elif alert.status == AlertStatus.FIRING and not quiet:
            due = alert.last_notified_at is None or now - alert.last_notified_at >= self.cooldown
            if upgraded:
                notified = await self._notify(alert, "firing", now)
            elif due:
                self.alerts.record(alert, "repeated", detail=f"seen {alert.count} times", at=now)
                notified = await self._notify(alert, "repeat", now)
        await self.session.flush()
        return RaiseResult(alert, created=False, notified=notified)

    async def _notify(self, alert: Alert, kind: str, now: datetime) -> bool:
        alert.last_notified_at = now
        rows = await self.notifications.notify_alert(alert, kind)
        if rows:
            self.alerts.record(alert, "notified", detail=f"{kind} to {len(rows)} channel(s)", at=now)
        await self.session.flush()
        return bool(rows)

    async def _reopen(self, alert: Alert, now: datetime, *, reason: str) -> bool:
        alert.acknowledged_by = alert.acknowledged_at = alert.acknowledged_until = None
        silence = await self.silences.matching(alert.component, alert.labels, now)
        if silence is not None:
            alert.status = AlertStatus.SILENCED
            self.alerts.record(
                alert, "reopened", detail=f"{reason}; silenced by silence {silence.id}", at=now
            )
            return False
        alert.status = AlertStatus.FIRING
        self.alerts.record(alert, "reopened", detail=reason, at=now)
        return await self._notify(alert, "firing", now)

    # --- operator actions ---------------------------------------------------------------------
    async def get(self, alert_id: int) -> Alert:
        alert = await self.alerts.get(alert_id)
        if alert is None:
            raise NotFound(f"alert {alert_id} not found")
        return alert

    async def acknowledge(
        self, alert_id: int, *, actor: str, until: datetime | None = None, comment: str | None = None
    ) -> Alert:
        """Stop notifications and escalation; with ``until`` it is a snooze that re-opens then."""
        now = utcnow()
        alert = await self.alerts.get(alert_id, for_update=True)
        if alert is None:
            raise NotFound(f"alert {alert_id} not found")
        if alert.status == AlertStatus.RESOLVED:
            raise Conflict(f"alert {alert_id} is already resolved")
        if until is not None and until <= now:
            raise ValidationFailed(
                "'until' must be in the future",
                details={"fields": [{"field": "until", "message": "must be in the future"}]},
            )
        alert.status = AlertStatus.ACKNOWLEDGED
        alert.acknowledged_by, alert.acknowledged_at, alert.acknowledged_until = actor, now, until
        detail = f"until {until.isoformat()}" if until else "indefinitely"
        self.alerts.record(
            alert, "acknowledged", actor=actor, detail=f"{detail}{': ' + comment if comment else ''}"
        )
        await self.notifications.notify_acknowledged(alert)
        await self.session.flush()
        return alert

    async def resolve(self, alert_id: int, *, resolution_action: str, actor: str = "system") -> Alert:
        """Resolve an active alert, record why, and tell the channels that were told about it."""
        alert = await self.alerts.get(alert_id, for_update=True)
        if alert is None:
            raise NotFound(f"alert {alert_id} not found")
        if alert.status == AlertStatus.RESOLVED:
            raise Conflict(f"alert {alert_id} is already resolved")
        await self._resolve(alert, resolution_action=resolution_action, actor=actor)
        return alert

    async def resolve_fingerprint(
        self, fingerprint: str, *, resolution_action: str, actor: str = "system"
    ) -> Alert | None:
        """Resolve the active alert of a condition; None (no error) when there is none."""
        alert = await self.alerts.active_by_fingerprint(fingerprint)
        if alert is None:
            return None
        await self._resolve(alert, resolution_action=resolution_action, actor=actor)
        return alert

    async def _resolve(self, alert: Alert, *, resolution_action: str, actor: str) -> None:
        now = utcnow()
        alert.status = AlertStatus.RESOLVED
        alert.resolved = True
        alert.resolved_at, alert.resolved_by = now, actor
        alert.resolution_action = resolution_action[:MAX_MESSAGE]
        self.alerts.record(alert, "resolved", actor=actor, detail=alert.resolution_action, at=now)
        await self.session.flush()
        await self.notifications.notify_resolved(alert)

    async def list(self, **filters: Any) -> tuple[list[Alert], int]:
        return await self.alerts.list(**filters)

    async def history(self, alert_id: int):
        return await self.alerts.history(alert_id)

    # --- upkeep (the maintenance loop) ------------------------------------------------------------
    async def reopen_expired_acks(self, now: datetime | None = None) -> int:
        now = now or utcnow()
        alerts = await self.alerts.acks_expired(now)
        for alert in alerts:
            await self._reopen(alert, now, reason="acknowledgement expired")
        await self.session.flush()
        return len(alerts)

    async def apply_silences(self, now: datetime | None = None) -> tuple[int, int]:
        """Silence firing alerts a new silence covers; un-silence (and notify) those whose silence ended."""
        now = now or utcnow()
        active = await self.silences.active(now)
        silenced = unsilenced = 0
        for alert in await self.alerts.with_status(AlertStatus.FIRING):
            match = next((s for s in active if silence_matches(s, alert.component, alert.labels)), None)
            if match is not None:
                alert.status = AlertStatus.SILENCED
                self.alerts.record(alert, "silenced", detail=f"silence {match.id}", at=now)
                silenced += 1
        for alert in await self.alerts.with_status(AlertStatus.SILENCED):
            if not any(silence_matches(s, alert.component, alert.labels) for s in active):
                alert.status = AlertStatus.FIRING
                self.alerts.record(alert, "unsilenced", detail="no active silence matches any more", at=now)
                await self._notify(alert, "firing", now)
                unsilenced += 1
        await self.session.flush()
        return silenced, unsilenced
