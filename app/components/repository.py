"""Data access for components. Only flushes; the caller owns the transaction."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Component, ComponentState


class ComponentRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def by_name(self, name: str) -> Component | None:
        return (
            (await self.session.execute(select(Component).where(Component.name == name)))
            .unique()
            .scalar_one_or_none()
        )

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
        conditions = []
        if region is not None:
            conditions.append(Component.region == region)
        if status is not None:
            conditions.append(ComponentState.status == status)
        if enabled is not None:
            conditions.append(Component.enabled == enabled)
        for key, value in (labels or {}).items():
            # JSON path extraction: json_extract on SQLite, ->> on Postgres (SQLAlchemy's JSON index).
            conditions.append(Component.labels[key].as_string() == value)
        # The page and the count are both answered by the database, so a page costs the same at
        # 100 components as at 20,000 (the registry is no longer read whole into memory).
        counted = select(func.count()).select_from(Component)
        if status is not None:  # the join only when it filters: counting 20k joined rows costs ~20x more
            counted = counted.join(ComponentState)
        total = (await self.session.execute(counted.where(*conditions))).scalar_one()
        rows = (
            (
                await self.session.execute(
                    select(Component)
                    .outerjoin(ComponentState)
                    .where(*conditions)
                    .order_by(Component.name)
                    .limit(limit)
                    .offset(offset)
                )
            )
            .unique()
            .scalars()
            .all()
        )
        return list(rows), int(total)

    async def count(self) -> int:
        return int((await self.session.execute(select(func.count()).select_from(Component))).scalar_one())
