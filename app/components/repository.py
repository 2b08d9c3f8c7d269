"""Data access for components. Only flushes; the caller owns the transaction."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.errors import DEADLOCK, sqlstate
from app.db.models import Component, ComponentState
from app.db.models.replicas import ComponentLease
from app.db.session import hold_write_lock

DEADLOCK_RETRIES = 3


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
        """Delete the component and (by cascade) everything recorded for it, while its checks may
        still be written. Locks are taken in a result flush's order: the lease row (the flush's
        fence), then the component row (a flush's insert of a check result holds it against
        deletion), and only then the dependent rows; a flush in progress is waited for, not
        deadlocked with. A writer taking those locks in another order can still meet the delete in a
        deadlock: the database aborts one statement, and the delete is tried again in its savepoint.
        On SQLite the write lock is taken first (a savepoint opened by a reader could not be upgraded
        to a writer while another one writes: "database is locked" at once, no busy wait)."""
        await hold_write_lock(self.session)
        for attempt in range(1, DEADLOCK_RETRIES + 1):
            try:
                async with self.session.begin_nested():
                    await self.session.execute(
                        select(ComponentLease.component_id)
                        .where(ComponentLease.component_id == component.id)
                        .with_for_update()
                    )
                    await self.session.execute(
                        select(Component.id).where(Component.id == component.id).with_for_update()
                    )
                    await self.session.delete(component)
                    await self.session.flush()
                return
            except DBAPIError as exc:
                if attempt == DEADLOCK_RETRIES or sqlstate(exc) != DEADLOCK:
                    raise

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
