"""Data access for alerts and their history. Only flushes; the caller owns the transaction."""

from __future__ import annotations

import builtins
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Alert, AlertEvent, AlertStatus

MAX_HISTORY = 500


class AlertRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def get(self, alert_id: int, *, for_update: bool = False) -> Alert | None:
        query = select(Alert).where(Alert.id == alert_id)
        if for_update:
            query = query.with_for_update()
        return (await self.session.execute(query)).scalar_one_or_none()

    async def active_by_fingerprint(self, fingerprint: str, *, for_update: bool = True) -> Alert | None:
        query = select(Alert).where(Alert.fingerprint == fingerprint, Alert.status != AlertStatus.RESOLVED)
        if for_update:
            query = query.with_for_update()  # ignored on SQLite, which has a single writer anyway
        return (await self.session.execute(query)).scalar_one_or_none()

    async def add(self, alert: Alert) -> Alert:
        self.session.add(alert)
        await self.session.flush()
        return alert

    def record(
        self,
        alert: Alert,
        kind: str,
        *,
        actor: str | None = None,
        detail: str | None = None,
        at: datetime | None = None,
    ) -> None:
        event = AlertEvent(alert_id=alert.id, kind=kind, actor=actor, detail=detail)
        if at is not None:
            event.at = at
        self.session.add(event)

    async def history(self, alert_id: int) -> list[AlertEvent]:
        rows = await self.session.execute(
            select(AlertEvent)
            .where(AlertEvent.alert_id == alert_id)
            .order_by(AlertEvent.id)
            .limit(MAX_HISTORY)
        )
        return list(rows.scalars())

    async def list(
        self,
        *,
        limit: int,
        offset: int,
        statuses: list[str] | None,
        severity: str | None,
        component: str | None,
        since: datetime | None,
    ) -> tuple[list[Alert], int]:
        query = select(Alert)
        if statuses:
            query = query.where(Alert.status.in_(statuses))
        if severity:
            query = query.where(Alert.severity == severity)
        if component:
            query = query.where(Alert.component == component)
        if since is not None:
            query = query.where(Alert.last_seen >= since)
        total = (await self.session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
        rows = await self.session.execute(
            query.order_by(Alert.last_seen.desc(), Alert.id.desc()).limit(limit).offset(offset)
        )
        return list(rows.scalars()), int(total)

    async def with_status(self, status: str, limit: int = 1000) -> builtins.list[Alert]:
        rows = await self.session.execute(
            select(Alert).where(Alert.status == status).order_by(Alert.id).limit(limit)
        )
        return list(rows.scalars())

    async def acks_expired(self, now: datetime, limit: int = 1000) -> builtins.list[Alert]:
        rows = await self.session.execute(
            select(Alert)
            .where(
                Alert.status == AlertStatus.ACKNOWLEDGED,
                Alert.acknowledged_until.is_not(None),
                Alert.acknowledged_until <= now,
            )
            .order_by(Alert.id)
            .limit(limit)
        )
        return list(rows.scalars())
