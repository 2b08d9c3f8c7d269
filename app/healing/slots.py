"""Concurrency slots: how many healing attempts may run at once, globally and per label group.

A running (or verifying) attempt holds a numbered slot; unique constraints on the attempt rows make
the limits hold across replicas and restarts, without a counter to keep in step.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config.settings import HealingSection
from app.db.models import HealingAttempt


async def free_slot(session: AsyncSession, column: Any, limit: int, *where: Any) -> int | None:
    used = (await session.execute(select(column).where(column.is_not(None), *where))).scalars().all()
    return first_free(used, limit)


def first_free(used: Iterable[int | None], limit: int) -> int | None:
    taken = set(used)
    for slot in range(limit):
        if slot not in taken:
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


def used_slots(healing: HealingSection, labels: dict[str, str]) -> tuple[Any, Any | None]:
    """`take_slots`' two reads as columns of another statement (Postgres: arrays, NULL when none is
    used): the global slots in use, and the group's (None without a group)."""
    used = select(func.array_agg(HealingAttempt.slot)).where(HealingAttempt.slot.is_not(None))
    key = group_key(healing, labels)
    if key is None:
        return used.scalar_subquery(), None
    used_in_group = select(func.array_agg(HealingAttempt.group_slot)).where(
        HealingAttempt.group_slot.is_not(None), HealingAttempt.group_key == key
    )
    return used.scalar_subquery(), used_in_group.scalar_subquery()


def slots_from(
    healing: HealingSection, labels: dict[str, str], used: list[int] | None, used_in_group: list[int] | None
) -> tuple[int, str | None, int | None] | None:
    """What `take_slots` answers, from the slots in use read by `used_slots`."""
    slot = first_free(used or (), healing.max_concurrent)
    if slot is None:
        return None
    key = group_key(healing, labels)
    group_slot = None
    if key is not None:
        group_slot = first_free(used_in_group or (), healing.max_concurrent_per_group)
        if group_slot is None:
            return None
    return slot, key, group_slot
