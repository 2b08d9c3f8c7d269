"""One aggregate row of a versioned table that moves on every change made through its service: the
cheap "did anything change?" read of loops that keep a table in memory (the scheduler's registry
watch, the rule evaluator's rules), instead of re-reading every row.

The table has ``id``, ``version`` (bumped by every edit), ``updated_at`` and ``enabled``: a create or
a delete moves the count and the id sum; an edit bumps the version sum and ``updated_at``; enabling or
disabling moves the sum of enabled ids; a row deleted and re-created under a reused id has a newer
``updated_at``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession


async def change_signature(session: AsyncSession, model: Any) -> tuple:
    row = (
        await session.execute(
            select(
                func.count(),
                func.sum(model.version),
                func.sum(model.id),
                func.max(model.updated_at),
                func.sum(case((model.enabled.is_(True), model.id), else_=0)),
            )
        )
    ).one()
    return tuple(row)
