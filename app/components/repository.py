"""Data access for components. Only flushes; the caller owns the transaction."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Component, ComponentState


class ComponentRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def by_name(self, name: str) -> Component | None:
        return (await self.session.execute(select(Component).where(Component.name == name))).unique().scalar_one_or_none()

    async def add(self, component: Component) -> Component:
        component.state = ComponentState()
        self.session.add(component)
        await self.session.flush()
        return component

    async def delete(self, component: Component) -> None:
        await self.session.delete(component)
        await self.session.flush()

    async def list(
        self,
        *,
        limit: int,
        offset: int,
        region: str | None = None,
        status: str | None = None,
        enabled: bool | None = None,
        labels: dict[str, str] | None = None,
    ) -> tuple[list[Component], int]:
        query = select(Component).outerjoin(ComponentState)
        if region is not None:
            query = query.where(Component.region == region)
        if status is not None:
            query = query.where(ComponentState.status == status)
        if enabled is not None:
            query = query.where(Component.enabled == enabled)
        rows = list((await self.session.execute(query.order_by(Component.name))).unique().scalars())
        if labels:
            # Label filters run in Python: JSON containment differs per dialect and the registry is
            # small (thousands of rows); region, the common filter, is an indexed column.
            rows = [c for c in rows if all(c.labels.get(k) == v for k, v in labels.items())]
        return rows[offset: offset + limit], len(rows)

    async def count(self) -> int:
        return int((await self.session.execute(select(func.count()).select_from(Component))).scalar_one())
