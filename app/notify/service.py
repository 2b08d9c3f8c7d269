"""Routing alerts to channels and writing the outbox rows (in the caller's transaction)."""

from __future__ import annotations

import builtins
import uuid
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Alert, Channel, DeliveryAttempt, Notification
from app.db.types import utcnow

NOTIFYING_KINDS = ("firing", "repeat", "escalation")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def snapshot(alert: Alert, kind: str) -> dict[str, Any]:
    """What a notification says, frozen when it is written (later changes send their own)."""
    return {
        "kind": kind,
        "created_at": utcnow().isoformat(),
        "alert": {
            "id": alert.id,
            "fingerprint": alert.fingerprint,
            "component": alert.component,
            "severity": alert.severity,
            "status": alert.status,
            "message": alert.message,
            "labels": dict(alert.labels or {}),
            "count": alert.count,
            "first_seen": _iso(alert.first_seen),
            "last_seen": _iso(alert.last_seen),
            "incident_id": alert.incident_id,
            "resolution_action": alert.resolution_action,
            # Root cause: the components this one's failure takes down with it.
            "affected": list((alert.meta or {}).get("affected") or []),
        },
    }


def label_match(matchers: dict[str, str], labels: dict[str, str]) -> bool:
    """Every matcher must match; values may be shell patterns (``etl-*``)."""
    return all(
        key in labels and fnmatchcase(str(labels[key]), str(pattern)) for key, pattern in matchers.items()
    )


def channel_routes(channel: Channel, alert: Alert) -> bool:
    if not channel.enabled or channel.escalation_only:
        return False
    if channel.severities and alert.severity not in channel.severities:
        return False
    return label_match(channel.matchers or {}, {**(alert.labels or {}), "component": alert.component})


class NotificationService:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def enqueue(
        self,
        channel: Channel,
        alert: Alert | None,
        kind: str,
        *,
        payload: dict | None = None,
        dedupe_key: str | None = None,
    ) -> Notification:
        notification = self._add(channel, alert, kind, payload=payload, dedupe_key=dedupe_key)
        await self.session.flush()
        return notification

    def _add(
        self,
        channel: Channel,
        alert: Alert | None,
        kind: str,
        *,
        payload: dict | None = None,
        dedupe_key: str | None = None,
    ) -> Notification:
        if payload is None:
            if alert is None:
                raise ValueError("a notification without an alert needs its payload")
            payload = snapshot(alert, kind)
        notification = Notification(
            channel_id=channel.id,
            alert_id=alert.id if alert is not None else None,
            kind=kind,
            idempotency_key=uuid.uuid4().hex,
            dedupe_key=dedupe_key,
            payload=payload,
            next_attempt_at=utcnow(),
        )
        self.session.add(notification)
        return notification

    async def enabled_channels(self) -> list[Channel]:
        return list((await self.session.execute(select(Channel).where(Channel.enabled.is_(True)))).scalars())

    def outbox_rows(self, alert: Alert, kind: str, channels: list[Channel]) -> list[Notification]:
        """Outbox rows (added, written by the caller's next flush) for those of ``channels`` that
        route this alert."""
        return [self._add(c, alert, kind) for c in channels if channel_routes(c, alert)]

    async def notify_alert(self, alert: Alert, kind: str) -> list[Notification]:
        """Outbox rows for every channel that routes this alert (firing, repeat), in one flush."""
        rows = self.outbox_rows(alert, kind, await self.enabled_channels())
        if rows:
            await self.session.flush()
        return rows

    async def notify_acknowledged(self, alert: Alert) -> list[Notification]:
        """An acknowledgement goes to the channels that heard about the alert and keep an incident of
        their own (PagerDuty, Opsgenie), so the person on call there sees it too."""
        from app.notify.channels import CHANNEL_KINDS

        kinds = [name for name, kind in CHANNEL_KINDS.items() if kind.forwards_acknowledgements]
        return [
            await self.enqueue(c, alert, "acknowledged") for c in await self._told(alert) if c.kind in kinds
        ]

    async def _told(self, alert: Alert) -> list[Channel]:
        channel_ids = (
            (
                await self.session.execute(
                    select(Notification.channel_id)
                    .where(Notification.alert_id == alert.id, Notification.kind.in_(NOTIFYING_KINDS))
                    .distinct()
                )
            )
            .scalars()
            .all()
        )
        if not channel_ids:
            return []
        return list(
            (
                await self.session.execute(
                    select(Channel)
                    .where(Channel.id.in_(channel_ids), Channel.enabled.is_(True))
                    .order_by(Channel.id)
                )
            ).scalars()
        )

    async def notify_resolved(self, alert: Alert) -> list[Notification]:
        """A resolve goes to every channel that heard about the alert (routing may have changed since)."""
        return [await self.enqueue(c, alert, "resolved") for c in await self._told(alert)]

    async def list(
        self,
        *,
        limit: int,
        offset: int,
        status: str | None = None,
        channel_id: int | None = None,
        alert_id: int | None = None,
    ) -> tuple[list[Notification], int]:
        query = select(Notification)
        if status:
            query = query.where(Notification.status == status)
        if channel_id is not None:
            query = query.where(Notification.channel_id == channel_id)
        if alert_id is not None:
            query = query.where(Notification.alert_id == alert_id)
        total = (await self.session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
        rows = (
            (await self.session.execute(query.order_by(Notification.id.desc()).limit(limit).offset(offset)))
            .scalars()
            .all()
        )
        return list(rows), int(total)

    async def attempts_for(self, ids: builtins.list[int]) -> dict[int, builtins.list[DeliveryAttempt]]:
        found: dict[int, list[DeliveryAttempt]] = {i: [] for i in ids}
        if not ids:
            return found
        rows = (
            await self.session.execute(
                select(DeliveryAttempt)
                .where(DeliveryAttempt.notification_id.in_(ids))
                .order_by(DeliveryAttempt.id)
            )
        ).scalars()
        for row in rows:
            found[row.notification_id].append(row)
        return found
