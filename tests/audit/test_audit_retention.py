"""Audit retention drains a backlog in bounded transactions and keeps what is young or unfinished."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event, func, select

from app.audit.service import AuditRetention
from app.db.models import AuditEntry, Channel, DeliveryAttempt, Notification, NotificationStatus
from app.db.types import utcnow


async def seed(guard, *, old_audit: int, young_audit: int, old_done: int) -> None:
    old = utcnow() - timedelta(days=400)  # past the default 90 days of compliance.data_retention
    async with guard.session() as session:
        for i in range(old_audit + young_audit):
            at = old if i < old_audit else utcnow()
            session.add(AuditEntry(at=at, action="POST /x", method="POST", path="/x", status_code=201))
        channel = Channel(name="ops", kind="webhook", config_encrypted="-")
        session.add(channel)
        await session.flush()
        statuses = [NotificationStatus.DELIVERED, NotificationStatus.FAILED] * old_done
        for i, status in enumerate([*statuses[:old_done], NotificationStatus.PENDING]):
            notification = Notification(
                channel_id=channel.id, kind="firing", idempotency_key=f"k{i}", status=status, created_at=old
            )
            session.add(notification)
            await session.flush()
            session.add(DeliveryAttempt(notification_id=notification.id, attempt=1, outcome="sent"))


async def test_a_backlog_is_deleted_in_bounded_transactions(audited):
    await seed(audited, old_audit=25, young_audit=3, old_done=12)
    deletes: list[int] = []

    def count(conn, cursor, statement, parameters, context, executemany):  # noqa: ARG001
        if statement.lstrip().upper().startswith("DELETE"):
            deletes.append(cursor.rowcount)

    engine = audited.runtime.engine.sync_engine
    event.listen(engine, "after_cursor_execute", count)
    try:
        assert await AuditRetention(audited.runtime.core, batch=10).run_once() == (25, 12)
    finally:
        event.remove(engine, "after_cursor_execute", count)
    assert deletes and max(deletes) <= 10  # no transaction deletes more than its batch of a kind
    async with audited.session() as session:
        assert (await session.execute(select(func.count()).select_from(AuditEntry))).scalar_one() == 3
        left = (await session.execute(select(Notification.status))).scalars().all()
        assert left == [NotificationStatus.PENDING]  # unfinished: kept whatever its age
        attempts = (await session.execute(select(func.count()).select_from(DeliveryAttempt))).scalar_one()
        assert attempts == 1
    assert await AuditRetention(audited.runtime.core, batch=10).run_once() == (0, 0)


async def test_a_pass_stops_after_its_batches_and_the_next_pass_goes_on(audited):
    await seed(audited, old_audit=25, young_audit=0, old_done=0)
    retention = AuditRetention(audited.runtime.core, batch=5, max_batches=2)
    assert await retention.run_once() == (10, 0)
    assert await retention.run_once() == (10, 0)
    assert await retention.run_once() == (5, 0)
