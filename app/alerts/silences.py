"""Silences (maintenance windows): time-bounded matchers that mute notifications and pause healing.

A silence matches a component name (exact or shell pattern like ``etl-*``; empty = any) and labels
(every listed label must be equal or match its pattern). It is active from ``starts_at`` until
``ends_at``, and so expires by itself; ``expire`` ends it now.
"""

from __future__ import annotations

from datetime import datetime
from fnmatch import fnmatchcase

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Silence
from app.db.types import utcnow
from app.errors import NotFound, ValidationFailed
from app.notify.service import label_match


def silence_matches(silence: Silence, component: str, labels: dict[str, str] | None) -> bool:
    if silence.component and not fnmatchcase(component, silence.component):
        return False
    return label_match(silence.labels or {}, labels or {})


def is_active(silence: Silence, at: datetime) -> bool:
    return silence.starts_at <= at < silence.ends_at


class SilenceService:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def active(self, at: datetime | None = None) -> list[Silence]:
        at = at or utcnow()
        rows = await self.session.execute(
            select(Silence).where(Silence.starts_at <= at, Silence.ends_at > at).order_by(Silence.id)
        )
        return list(rows.scalars())

    async def matching(self, component: str, labels: dict[str, str] | None = None,
                       at: datetime | None = None) -> Silence | None:
        for silence in await self.active(at):
            if silence_matches(silence, component, labels):
                return silence
        return None

    async def matches(self, component: str, labels: dict[str, str] | None = None, at: datetime | None = None) -> bool:
        """True while an active silence covers ``component`` with ``labels`` (healing asks this)."""
        return await self.matching(component, labels, at) is not None

    async def create(self, *, component: str | None, labels: dict[str, str], starts_at: datetime | None,
                     ends_at: datetime, created_by: str, comment: str) -> Silence:
        starts_at = starts_at or utcnow()
        if ends_at <= starts_at:
            raise ValidationFailed("a silence must end after it starts",
                                   details={"fields": [{"field": "ends_at", "message": "must be after starts_at"}]})
        if ends_at <= utcnow():
            raise ValidationFailed("the silence would already be over",
                                   details={"fields": [{"field": "ends_at", "message": "must be in the future"}]})
        silence = Silence(component=component or None, labels=labels, starts_at=starts_at, ends_at=ends_at,
                          created_by=created_by, comment=comment)
        self.session.add(silence)
        await self.session.flush()
        return silence

    async def get(self, silence_id: int) -> Silence:
        silence = await self.session.get(Silence, silence_id)
        if silence is None:
            raise NotFound(f"silence {silence_id} not found")
        return silence

    async def expire(self, silence_id: int) -> Silence:
        silence = await self.get(silence_id)
        now = utcnow()
        if silence.ends_at > now:
            silence.ends_at = max(now, silence.starts_at)
            await self.session.flush()
        return silence

    async def list(self, *, limit: int, offset: int, include_expired: bool) -> tuple[list[Silence], int]:
        query = select(Silence)
        if not include_expired:
            query = query.where(Silence.ends_at > utcnow())
        rows = list((await self.session.execute(query.order_by(Silence.id.desc()))).scalars())
        return rows[offset: offset + limit], len(rows)
