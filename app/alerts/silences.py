"""Silences (maintenance windows): time-bounded matchers that mute notifications and pause healing.

A silence matches a component name (exact or shell pattern like ``etl-*``; empty = any) and labels
(every listed label must be equal or match its pattern). It is active from ``starts_at`` until
``ends_at``, and so expires by itself; ``expire`` ends it now. A recurring silence (a maintenance
window with a cron ``schedule`` and a duration) is active only inside its windows (``windows.py``).
"""

from __future__ import annotations

from datetime import datetime
from fnmatch import fnmatchcase

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts import windows
from app.core.errors import Conflict, NotFound
from app.db.models import Silence
from app.db.types import utcnow
from app.notify.service import label_match


def silence_matches(silence: Silence, component: str, labels: dict[str, str] | None) -> bool:
    if silence.component and not fnmatchcase(component, silence.component):
        return False
    return label_match(silence.labels or {}, labels or {})


def is_active(silence: Silence, at: datetime) -> bool:
    return windows.open_window(silence, at) is not None


class SilenceService:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def active(self, at: datetime | None = None) -> list[Silence]:
        at = at or utcnow()
        rows = await self.session.execute(
            select(Silence).where(Silence.starts_at <= at, Silence.ends_at > at).order_by(Silence.id)
        )
        return [s for s in rows.scalars() if is_active(s, at)]

    async def upcoming(
        self, at: datetime | None = None, limit: int = 20
    ) -> list[tuple[Silence, datetime, datetime]]:
        """Windows that will open after ``at``: (silence, opens, closes), soonest first."""
        at = at or utcnow()
        rows = (await self.session.execute(select(Silence).where(Silence.ends_at > at))).scalars()
        found = []
        for silence in rows:
            window = (
                (silence.starts_at, silence.ends_at)
                if not silence.schedule and silence.starts_at > at
                else windows.next_window(silence, at)
            )
            if window is not None:
                found.append((silence, *window))
        return sorted(found, key=lambda item: (item[1], item[0].id))[:limit]

    async def matching(
        self, component: str, labels: dict[str, str] | None = None, at: datetime | None = None
    ) -> Silence | None:
        for silence in await self.active(at):
            if silence_matches(silence, component, labels):
                return silence
        return None

    async def matches(
        self, component: str, labels: dict[str, str] | None = None, at: datetime | None = None
    ) -> bool:
        """True while an active silence covers ``component`` with ``labels`` (healing asks this)."""
        return await self.matching(component, labels, at) is not None

    async def create(
        self,
        *,
        component: str | None,
        labels: dict[str, str],
        starts_at: datetime | None,
        ends_at: datetime | None,
        created_by: str,
        comment: str,
        duration: float | None = None,
        schedule: str | None = None,
        tz: str | None = None,
        name: str | None = None,
        source: str = "api",
    ) -> Silence:
        columns = windows.plan(
            starts_at=starts_at, ends_at=ends_at, duration=duration, schedule=schedule, tz=tz, now=utcnow()
        )
        if (
            name is not None
            and (await self.session.execute(select(Silence.id).where(Silence.name == name))).first()
        ):
            raise Conflict(f"a maintenance window named {name!r} already exists")
        silence = Silence(
            component=component or None,
            labels=labels,
            created_by=created_by,
            comment=comment,
            name=name,
            source=source,
            **columns,
        )
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
        return rows[offset : offset + limit], len(rows)
