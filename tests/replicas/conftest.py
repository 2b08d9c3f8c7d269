"""In-process replicas: several apps (each its own engine and lease manager) on one fresh Postgres
database; the managers are ticked by hand so every step is deterministic."""

from __future__ import annotations

from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from sqlalchemy import insert, select, text

from app.db.models import Component, ComponentLease
from tests.conftest import make_settings, running_guard

FAST = {"lease_ttl": 3.0, "renew_interval": 1.0}


@pytest.fixture
def pg_url(postgres_databases) -> str:
    return postgres_databases.create()


@asynccontextmanager
async def replicas(url: str, tmp_path, regions: list[str | None], **replication):
    async with AsyncExitStack() as stack:
        guards = []
        for i, region in enumerate(regions):
            settings = make_settings(
                url,
                tmp_path / f"r{i}",
                region=region,
                replica_id=f"r{i}",
                replication={**FAST, **replication},
            )
            guard = await stack.enter_async_context(running_guard(settings))
            guard.manager = guard.runtime.replicas.leases
            guard.manager.reattach()  # not started: the tests tick it
            guards.append(guard)
        yield guards


async def add_components(guard, count: int, *, region: str | None = None, start: int = 0) -> list[int]:
    rows = [
        {
            "name": f"c{start + i:04d}",
            "labels": {"region": region} if region else {},
            "region": region,
            "check": {"kind": "tcp", "host": "127.0.0.1", "port": 9},
        }
        for i in range(count)
    ]
    async with guard.session() as session:
        return list((await session.execute(insert(Component).returning(Component.id), rows)).scalars())


async def lease_rows(guard) -> dict[int, tuple[str, int, bool]]:
    from sqlalchemy import func

    async with guard.session() as session:
        rows = await session.execute(
            select(
                ComponentLease.component_id,
                ComponentLease.replica_id,
                ComponentLease.epoch,
                ComponentLease.expires_at > func.now(),
            )
        )
        return {cid: (rid, epoch, valid) for cid, rid, epoch, valid in rows}


async def tick(guards, rounds: int = 2) -> None:
    for _ in range(rounds):
        for guard in guards:
            await guard.manager.run_once()


async def expire(guard) -> None:
    """The guard's leases and heartbeat expire in the database, as if its renewals had stopped."""
    async with guard.session() as session:
        await session.execute(
            text("UPDATE component_leases SET expires_at = now() - interval '1 s' WHERE replica_id = :id"),
            {"id": guard.manager.replica_id},
        )
        await session.execute(
            text("UPDATE replicas SET heartbeat_at = now() - interval '10 s' WHERE id = :id"),
            {"id": guard.manager.replica_id},
        )
