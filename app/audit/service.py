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

    async def prune(self, older_than: datetime, batch: int) -> tuple[int, int]:
        """Deletes at most ``batch`` audit rows older than ``older_than`` and at most ``batch`` finished
        notifications (with their delivery log: they follow the same retention). Returns both counts:
        a count below ``batch`` means that kind is drained."""
        old_rows = (
            select(AuditEntry.id).where(AuditEntry.at < older_than).order_by(AuditEntry.id).limit(batch)
        )
        result = await self.session.execute(
            delete(AuditEntry).where(AuditEntry.id.in_(old_rows.scalar_subquery()))
        )
        done = (
            (
                await self.session.execute(
                    select(Notification.id)
                    .where(
                        Notification.status.in_((NotificationStatus.DELIVERED, NotificationStatus.FAILED)),
                        Notification.created_at < older_than,
                    )
                    .order_by(Notification.id)
                    .limit(batch)
                )
            )
            .scalars()
            .all()
        )
        if done:
            await self.session.execute(
                delete(DeliveryAttempt).where(DeliveryAttempt.notification_id.in_(done))
            )
            await self.session.execute(delete(Notification).where(Notification.id.in_(done)))
        return cast("CursorResult[Any]", result).rowcount or 0, len(done)  # a DELETE's is a CursorResult


class AuditRetention(LoopService):
    """Drops audit rows (and finished notifications) older than ``compliance.data_retention``, at most
    ``batch`` of each per transaction and ``max_batches`` transactions per pass (the rest on the next
    pass): a backlog never holds the database's write lock, or a huge WAL flush, for long."""

    name = "audit-retention"

    def __init__(self, state: Core, interval: float = 3600.0, batch: int = 5000, max_batches: int = 200):
        super().__init__(interval, metrics=state.metrics)
        self.state = state
        self.batch = batch
        self.max_batches = max_batches

    async def run_once(self) -> tuple[int, int]:
        cutoff = utcnow() - timedelta(seconds=self.state.settings.compliance.data_retention)
        audit = notifications = 0
        for _ in range(self.max_batches):
            async with session_scope(self.state.sessionmaker) as session:
                rows, done = await AuditService(session).prune(cutoff, self.batch)
            audit += rows
            notifications += done
            if rows < self.batch and done < self.batch:
                break
        return audit, notifications
