"""Reading and pruning the audit log."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import delete, func, select
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import AuditEntry, DeliveryAttempt, Notification, NotificationStatus
from app.db.session import session_scope
from app.db.types import utcnow
from app.platform.loops import LoopService

if TYPE_CHECKING:
    from app.platform.core import Core


class AuditService:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def list(
        self,
        *,
        limit: int,
        offset: int,
        username: str | None = None,
        action: str | None = None,
        method: str | None = None,
        status_code: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> tuple[list[AuditEntry], int]:
        query = select(AuditEntry)
        if username:
            query = query.where(AuditEntry.username == username)
        if action:
            query = query.where(AuditEntry.action.contains(action, autoescape=True))
        if method:
            query = query.where(AuditEntry.method == method.upper())
        if status_code is not None:
            query = query.where(AuditEntry.status_code == status_code)
        if since is not None:
            query = query.where(AuditEntry.at >= since)
        if until is not None:
            query = query.where(AuditEntry.at < until)
        total = (await self.session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
        rows = await self.session.execute(query.order_by(AuditEntry.id.desc()).limit(limit).offset(offset))
        return list(rows.scalars()), int(total)

    async def prune(self, older_than: datetime) -> int:
        result = await self.session.execute(delete(AuditEntry).where(AuditEntry.at < older_than))
        # Finished notifications (and their delivery log) follow the same retention.
        done = select(Notification.id).where(
            Notification.status.in_((NotificationStatus.DELIVERED, NotificationStatus.FAILED)),
            Notification.created_at < older_than,
        )
        await self.session.execute(delete(DeliveryAttempt).where(DeliveryAttempt.notification_id.in_(done)))
        await self.session.execute(delete(Notification).where(Notification.id.in_(done)))
        return cast("CursorResult[Any]", result).rowcount or 0  # a DELETE's result is a CursorResult


class AuditRetention(LoopService):
    """Drops audit rows older than ``compliance.data_retention``."""

    name = "audit-retention"

    def __init__(self, state: Core, interval: float = 3600.0):
        super().__init__(interval, metrics=state.metrics)
        self.state = state

    async def run_once(self) -> None:
        cutoff = utcnow() - timedelta(seconds=self.state.settings.compliance.data_retention)
        async with session_scope(self.state.sessionmaker) as session:
            await AuditService(session).prune(cutoff)
