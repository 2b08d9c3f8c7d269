"""Escalation: an alert still unacknowledged ``escalate_after`` seconds after a channel was told about
it is sent to that channel's ``escalate_to`` channel; chains continue from there (A -> B -> C).

Each step is written at most once (``dedupe_key = esc:<notification id>``, unique), so replicas racing
on the same alert cannot page twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import String, cast, exists, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.db.models import Alert, AlertEvent, AlertStatus, Channel, Notification
from app.db.session import session_scope
from app.notify.claim import claim_strategy
from app.notify.service import NotificationService
from app.platform.loops import LoopService

if TYPE_CHECKING:
    from app.platform.core import Core

ESCALATING_KINDS = ("firing", "escalation")
MAX_PER_RUN = 500


async def escalate_due(session: AsyncSession, now: datetime) -> int:
    step = aliased(Notification)
    dedupe = literal("esc:").concat(cast(Notification.id, String))
    rows = (
        await session.execute(
            select(Notification, Channel, Alert)
            .join(Channel, Notification.channel_id == Channel.id)
            .join(Alert, Notification.alert_id == Alert.id)
            .where(
                Alert.status == AlertStatus.FIRING,
                Notification.kind.in_(ESCALATING_KINDS),
                Channel.escalate_to_id.is_not(None),
                Channel.escalate_after.is_not(None),
                ~exists().where(step.dedupe_key == dedupe),
            )
            .order_by(Notification.id)
            .limit(MAX_PER_RUN)
        )
    ).all()
    notifications = NotificationService(session)
    escalated = 0
    for notification, channel, alert in rows:
        after = channel.escalate_after  # never None here (the query's filter)
        if after is None or notification.created_at + timedelta(seconds=after) > now:
            continue
        target = await session.get(Channel, channel.escalate_to_id)
        if target is None or not target.enabled:
            continue
        try:
            async with session.begin_nested():
                await notifications.enqueue(target, alert, "escalation", dedupe_key=f"esc:{notification.id}")
        except IntegrityError:
            continue  # another replica wrote this step first
        alert.escalation_level += 1
        session.add(
            AlertEvent(
                alert_id=alert.id,
                kind="escalated",
                actor="system",
                detail=f"not acknowledged after {after:g}s on {channel.name}: escalated to {target.name}",
            )
        )
        escalated += 1
    await session.flush()
    return escalated


class EscalationLoop(LoopService):
    name = "notify-escalation"

    def __init__(self, state: Core, *, interval: float | None = None):
        super().__init__(interval or state.settings.alerting.escalation_interval, metrics=state.metrics)
        self.state = state

    async def run_once(self) -> None:
        async with session_scope(self.state.sessionmaker) as session:
            now = await claim_strategy(session.get_bind().dialect.name).now(session)
            await escalate_due(session, now)
