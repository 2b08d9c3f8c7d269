"""Healing's API logic: queries here; decisions and side effects go through the engine."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import NotFound
from app.db.models.components import Component
from app.db.models.healing import IN_FLIGHT, AttemptState, HealingAttempt, HealingBudget
from app.db.session import session_scope

if TYPE_CHECKING:
    from app.platform.core import Core

DECIDED = (AttemptState.SUCCEEDED, AttemptState.FAILED, AttemptState.INTERRUPTED)


class HealingService:
    def __init__(self, session: AsyncSession, state: Core) -> None:
        self.session = session
        self.state = state

    async def list_attempts(
        self,
        *,
        component: str | None = None,
        state: str | None = None,
        strategy: str | None = None,
        incident_id: int | None = None,
        since: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ):
        filters = []
        if component:
            filters.append(HealingAttempt.component == component)
        if state:
            filters.append(HealingAttempt.state == state)
        if strategy:
            filters.append(HealingAttempt.strategy == strategy)
        if incident_id is not None:
            filters.append(HealingAttempt.incident_id == incident_id)
        if since is not None:
            filters.append(HealingAttempt.created_at >= since)
        total = (
            await self.session.execute(select(func.count()).select_from(HealingAttempt).where(*filters))
        ).scalar_one()
        rows = (
            (
                await self.session.execute(
                    select(HealingAttempt)
                    .where(*filters)
                    .order_by(HealingAttempt.id.desc())
                    .limit(limit)
                    .offset(offset)
                )
            )
            .scalars()
            .all()
        )
        return rows, total

    async def get_attempt(self, attempt_id: int) -> HealingAttempt:
        row = await self.session.get(HealingAttempt, attempt_id)
        if row is None:
            raise NotFound(f"healing attempt {attempt_id} not found")
        return row

    async def stats(self) -> dict[str, Any]:
        return await compute_stats(self.session, self.state)


async def compute_stats(session: AsyncSession, state: Core) -> dict[str, Any]:
    """The seed's get_healing_stats: totals, success rates overall and per strategy, MTTR, breakers."""
    by_state = dict(
        (
            await session.execute(select(HealingAttempt.state, func.count()).group_by(HealingAttempt.state))
        ).all()
    )
    rows = (
        await session.execute(
            select(
                HealingAttempt.strategy,
                HealingAttempt.state,
                func.count(),
                func.avg(HealingAttempt.time_to_recover_s),
            ).group_by(HealingAttempt.strategy, HealingAttempt.state)
        )
    ).all()
    per: dict[str, dict[str, Any]] = {}
    for strategy, st, count, mean_ttr in rows:
        entry = per.setdefault(
            strategy,
            {
                "strategy": strategy,
                "attempts": 0,
                "succeeded": 0,
                "failed": 0,
                "mean_time_to_recover_s": None,
            },
        )
        entry["attempts"] += count
        if st == AttemptState.SUCCEEDED:
            entry["succeeded"] += count
            entry["mean_time_to_recover_s"] = None if mean_ttr is None else round(float(mean_ttr), 3)
        elif st in (AttemptState.FAILED, AttemptState.INTERRUPTED):
            entry["failed"] += count
    for entry in per.values():
        decided = entry["succeeded"] + entry["failed"]
        entry["success_rate"] = round(entry["succeeded"] / decided, 4) if decided else None
    succeeded = by_state.get(AttemptState.SUCCEEDED, 0)
    decided = sum(by_state.get(s, 0) for s in DECIDED)
    mttr = (
        await session.execute(
            select(func.avg(HealingAttempt.time_to_recover_s)).where(
                HealingAttempt.state == AttemptState.SUCCEEDED
            )
        )
    ).scalar_one()
    # Only components that exist: a deleted one's budget is dropped with it, and never shown meanwhile.
    breakers = (
        (
            await session.execute(
                select(HealingBudget.component)
                .join(Component, Component.name == HealingBudget.component)
                .where(HealingBudget.breaker_open.is_(True))
                .order_by(HealingBudget.component)
            )
        )
        .scalars()
        .all()
    )
    in_progress = sum(by_state.get(s, 0) for s in IN_FLIGHT)
    # The Prometheus gauge says what the stats say (the reconciler also sets it on every pass).
    state.metrics.healing_in_progress.set(in_progress)
    return {
        "enabled": state.settings.healing.enabled,
        "total_attempts": sum(by_state.values()),
        "by_state": {str(k): v for k, v in by_state.items()},
        "success_rate": round(succeeded / decided, 4) if decided else None,
        "mean_time_to_recover_s": None if mttr is None else round(float(mttr), 3),
        "in_progress": in_progress,
        "pending_approval": by_state.get(AttemptState.PENDING_APPROVAL, 0),
        "breakers_open": list(breakers),
        "per_strategy": sorted(per.values(), key=lambda e: e["strategy"]),
    }


def stats_provider(state: Core):
    """For /api/v1/status/detailed: ``await provider()`` returns the healing section."""

    async def provider(_state: Any = None) -> dict[str, Any]:
        async with session_scope(state.sessionmaker) as session:
            return await compute_stats(session, state)

    return provider
