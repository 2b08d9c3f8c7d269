"""How a sender claims due notifications: the one place the outbox differs per dialect.

Postgres: ``SELECT ... FOR UPDATE SKIP LOCKED`` so several replicas share the outbox without ever
taking the same row. SQLite (one writer at a time, no row locks): a compare-and-set ``UPDATE`` per
candidate, which only one process can win. Both set a lease (``claimed_until``): a row claimed by a
sender that died is claimable again once the lease ends. Times come from the database's clock on
Postgres (replicas compare them); SQLite is single-host, the process clock is the database's clock.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Notification, NotificationStatus
from app.db.types import utcnow


def _claimable(now: Any):  # a datetime, or the database's clock (``func.now()``)
    return or_(
        and_(Notification.status == NotificationStatus.PENDING, Notification.next_attempt_at <= now),
        and_(Notification.status == NotificationStatus.SENDING, Notification.claimed_until < now),
    )


def _candidates(now: Any, limit: int, exclude_channels: Collection[int] = ()):
    query = select(Notification.id).where(_claimable(now))
    if exclude_channels:
        # Channels whose receiver already holds enough of this sender's sends (a slow one).
        query = query.where(Notification.channel_id.not_in(list(exclude_channels)))
    return query.order_by(Notification.next_attempt_at, Notification.id).limit(limit)


class ClaimStrategy(ABC):
    """How a sender claims due notifications: one strategy per dialect."""

    async def now(self, session: AsyncSession) -> datetime:  # noqa: ARG002  overridden by dialects that ask the database
        return utcnow()

    @abstractmethod
    async def claim(
        self,
        session: AsyncSession,
        *,
        limit: int,
        lease: float,
        token: str,
        exclude_channels: Collection[int] = (),
    ) -> list[int]:
        """Claim up to ``limit`` due notifications for ``lease`` seconds under ``token``; their ids."""


class PostgresClaim(ClaimStrategy):
    async def now(self, session: AsyncSession) -> datetime:
        return (await session.execute(select(func.now()))).scalar_one()

    async def claim(
        self,
        session: AsyncSession,
        *,
        limit: int,
        lease: float,
        token: str,
        exclude_channels: Collection[int] = (),
    ) -> list[int]:
        now = func.now()  # the database's clock, read by the statements themselves: no round trip
        ids = list(
            (
                await session.execute(
                    _candidates(now, limit, exclude_channels).with_for_update(skip_locked=True)
                )
            ).scalars()
        )
        if ids:
            await session.execute(
                update(Notification)
                .where(Notification.id.in_(ids))
                .values(
                    status=NotificationStatus.SENDING,
                    claim_token=token,
                    claimed_until=now + timedelta(seconds=lease),
                )
            )
        return ids


class SqliteClaim(ClaimStrategy):
    async def claim(
        self,
        session: AsyncSession,
        *,
        limit: int,
        lease: float,
        token: str,
        exclude_channels: Collection[int] = (),
    ) -> list[int]:
        now = await self.now(session)
        won = []
        for notification_id in (
            (await session.execute(_candidates(now, limit, exclude_channels))).scalars().all()
        ):
            result = await session.execute(
                update(Notification)
                .where(Notification.id == notification_id, _claimable(now))
                .values(
                    status=NotificationStatus.SENDING,
                    claim_token=token,
                    claimed_until=now + timedelta(seconds=lease),
                )
            )
            if cast("CursorResult[Any]", result).rowcount == 1:  # an UPDATE's result is a CursorResult
                won.append(notification_id)
        return won


def claim_strategy(dialect_name: str) -> ClaimStrategy:
    return PostgresClaim() if dialect_name == "postgresql" else SqliteClaim()
