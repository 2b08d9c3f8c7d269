"""Concurrency slots: how many healing attempts may run at once, globally and per label group.

A running (or verifying) attempt holds a numbered slot; unique constraints on the attempt rows make
the limits hold across replicas and restarts, without a counter to keep in step.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config.settings import HealingSection
from app.db.models import HealingAttempt


async def free_slot(session: AsyncSession, column: Any, limit: int, *where: Any) -> int | None:
    used = set((await session.execute(select(column).where(column.is_not(None), *where))).scalars().all())
    for slot in range(limit):
        if slot not in used:
            return slot
    return None


def group_key(healing: HealingSection, labels: dict[str, str]) -> str | None:
    value = labels.get(healing.group_label)
    return f"{healing.group_label}={value}"[:160] if value else None


async def take_slots(
    session: AsyncSession, healing: HealingSection, labels: dict[str, str]
) -> tuple[int, str | None, int | None] | None:
    """(global slot, group key, group slot), or None when either limit is reached."""
    slot = await free_slot(session, HealingAttempt.slot, healing.max_concurrent)
    if slot is None:
        return None
    key = group_key(healing, labels)
    group_slot = None
    if key is not None:
        group_slot = await free_slot(
            session,
            HealingAttempt.group_slot,
            healing.max_concurrent_per_group,
            HealingAttempt.group_key == key,
        )
        if group_slot is None:
            return None
    return slot, key, group_slot
