"""Data access for alerts and their history. Only flushes; the caller owns the transaction.

An active alert this transaction has locked (read ``FOR UPDATE``, or inserted) is not read again
by it: no other transaction can change or resolve it before this one ends, so the session's own
object is the row (a transition raises its component's alert twice in one flush: the incident it
opens, then the transition itself)."""

from __future__ import annotations

import builtins
import weakref
from datetime import datetime
from typing import Any

from sqlalchemy import func, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Alert, AlertEvent, AlertStatus
from app.db.upsert import insert_unless_present

MAX_HISTORY = 500
LOCKED_KEY = "alerts.locked"


class AlertRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def get(self, alert_id: int, *, for_update: bool = False) -> Alert | None:
        query = select(Alert).where(Alert.id == alert_id)
        if for_update:
            query = query.with_for_update()
        return (await self.session.execute(query)).scalar_one_or_none()

    async def active_by_fingerprint(self, fingerprint: str, *, for_update: bool = True) -> Alert | None:
        held = self._locked_here(fingerprint)
        if held is not None:
            return held
        query = select(Alert).where(Alert.fingerprint == fingerprint, Alert.status != AlertStatus.RESOLVED)
        if for_update:
            query = query.with_for_update()  # ignored on SQLite, which has a single writer anyway
        alert = (await self.session.execute(query)).scalar_one_or_none()
        if alert is not None and for_update:
            self._hold(alert)
        return alert

    async def insert_unless_active(self, values: dict[str, Any]) -> Alert | None:
        """Insert a new active alert in one statement; None (nothing inserted) when another
        transaction holds an active alert with the same fingerprint (the unique index)."""
        stmt = insert_unless_present(self.session, Alert).values(**values).returning(Alert)
        alert = (await self.session.execute(stmt)).scalar_one_or_none()
        if alert is not None:
            self._hold(alert)
        return alert

    def _locks(self) -> dict[str, Alert] | None:
        """This transaction's locked active alerts by fingerprint, while no savepoint has begun or ended
        since they were locked (a savepoint rolled back gives its locks back)."""
        sync = self.session.sync_session
        txn = sync.get_transaction()
        if txn is None:
            return None
        nested = sync.get_nested_transaction()
        hit = self.session.info.get(LOCKED_KEY)
        # Weak references: the session's info must not keep its transactions (and so the session)
        # alive in a reference cycle, which only the cyclic garbage collector would free.
        if hit is None or hit[0]() is not txn or (hit[1]() if hit[1] is not None else None) is not nested:
            hit = (weakref.ref(txn), weakref.ref(nested) if nested is not None else None, {})
            self.session.info[LOCKED_KEY] = hit
        return hit[2]

    def _hold(self, alert: Alert) -> None:
        locks = self._locks()
        if locks is not None:
            locks[alert.fingerprint] = alert

    def _locked_here(self, fingerprint: str) -> Alert | None:
        locks = self._locks()
        alert = locks.get(fingerprint) if locks else None
        if alert is None:
            return None
        state = inspect(alert)
        loaded = state.dict
        if (
            state.persistent
            and loaded.get("fingerprint") == fingerprint
            and loaded.get("status", AlertStatus.RESOLVED) != AlertStatus.RESOLVED
        ):
            return alert
        return None

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
