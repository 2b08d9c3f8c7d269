"""Who runs and who owns what: the read side behind /api/v1/replicas."""

from __future__ import annotations

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Component, ComponentLease, Replica
from app.replicas.leases import lease_store
from app.replicas.schemas import ReplicaOut, ReplicaPage


class ReplicaService:
    def __init__(self, session: AsyncSession, *, ttl: float, this_replica: str | None):
        self.session = session
        self.ttl = ttl
        self.this_replica = this_replica
        self.store = lease_store(session.get_bind().dialect.name)

    async def list(self, *, limit: int, offset: int, include_gone: bool, names_limit: int) -> ReplicaPage:
        where = [] if include_gone else [Replica.status != "gone"]
        total = (
            await self.session.execute(select(func.count()).select_from(Replica).where(*where))
        ).scalar_one()
        rows = list(
            (
                await self.session.execute(
                    select(Replica)
                    .where(*where)
                    .order_by(case((Replica.status == "active", 0), else_=1), Replica.region, Replica.id)
                    .limit(limit)
                    .offset(offset)
                )
            ).scalars()
        )
        summary = await self.store.summary(self.session, rows, names_limit, self.ttl)
        items = []
        for r in rows:
            live, count, names = summary.get(r.id, (False, 0, []))
            items.append(
                ReplicaOut(
                    id=r.id,
                    region=r.region,
                    version=r.version,
                    host=r.host,
                    pid=r.pid,
                    started_at=r.started_at,
                    heartbeat_at=r.heartbeat_at,
                    status=r.status,
                    live=live,
                    this_replica=r.id == self.this_replica,
                    leases=count,
                    components=names,
                    components_truncated=count > len(names),
                )
            )
        unowned = None
        if self.store.multi_replica:
            held = select(ComponentLease.component_id).where(ComponentLease.expires_at > func.now())
            unowned = (
                await self.session.execute(
                    select(func.count())
                    .select_from(Component)
                    .where(Component.enabled.is_(True), Component.id.not_in(held))
                )
            ).scalar_one()
        return ReplicaPage(items=items, total=total, limit=limit, offset=offset, unowned_components=unowned)
