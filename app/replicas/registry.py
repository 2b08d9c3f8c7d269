"""The replicas table: who is running, where, which version, and whether it is alive.

Heartbeats are written with the database clock (`now()`); liveness is decided in SQL against the same
clock, so process clocks never meet.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from app import __version__
from app.db.models import Replica

ACTIVE, DRAINING, GONE = "active", "draining", "gone"
GONE_ROWS_KEPT = timedelta(hours=24)


@dataclass(frozen=True)
class ReplicaInfo:
    id: str
    region: str | None
    version: str
    host: str
    pid: int


def make_replica_info(settings) -> ReplicaInfo:
    """One id per process: ``<PIPELINE_REPLICA_ID or hostname>-<8 hex>``. The suffix keeps a restarted
    pod (same name) from inheriting the leases its dead predecessor held: the new process takes
    them as a new holder, which bumps their epochs."""
    host = socket.gethostname()
    base = (settings.replica_id or host)[:110]
    return ReplicaInfo(
        id=f"{base}-{uuid.uuid4().hex[:8]}",
        region=settings.region,
        version=__version__[:32],
        host=host[:255],
        pid=os.getpid(),
    )


def _ttl(seconds: float):
    return timedelta(seconds=seconds)


async def register(session: AsyncSession, info: ReplicaInfo) -> None:
    existing = await session.get(Replica, info.id)
    if existing is None:
        session.add(
            Replica(
                id=info.id,
                region=info.region,
                version=info.version,
                host=info.host,
                pid=info.pid,
                status=ACTIVE,
            )
        )
        await session.flush()
    else:
        await heartbeat(session, info.id, ACTIVE)


async def heartbeat(session: AsyncSession, replica_id: str, status: str = ACTIVE) -> bool:
    """Refresh this replica's heartbeat (database clock). False if its row is missing."""
    result = await session.execute(
        update(Replica)
        .where(Replica.id == replica_id)
        .values(heartbeat_at=func.now(), status=status)
        .execution_options(synchronize_session=False)
    )
    return cast("CursorResult[Any]", result).rowcount > 0  # an UPDATE's result is a CursorResult


async def live_replicas(session: AsyncSession, ttl: float) -> dict[str, str | None]:
    """replica id -> region, for every active replica whose heartbeat is younger than the lease TTL."""
    rows = await session.execute(
        select(Replica.id, Replica.region).where(
            Replica.status == ACTIVE, Replica.heartbeat_at > func.now() - _ttl(ttl)
        )
    )
    return dict(rows.all())  # rows, not the Result: a Result has keys(), the column names


async def expire_dead(session: AsyncSession, ttl: float) -> int:
    """Mark replicas silent for longer than the TTL as gone; forget gone rows after a day."""
    result = await session.execute(
        update(Replica)
        .where(Replica.status != GONE, Replica.heartbeat_at < func.now() - _ttl(ttl))
        .values(status=GONE)
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        delete(Replica)
        .where(and_(Replica.status == GONE, Replica.heartbeat_at < func.now() - GONE_ROWS_KEPT))
        .execution_options(synchronize_session=False)
    )
    return cast("CursorResult[Any]", result).rowcount  # an UPDATE's result is a CursorResult


async def mark(session: AsyncSession, replica_id: str, status: str) -> None:
    await session.execute(
        update(Replica)
        .where(Replica.id == replica_id)
        .values(status=status)
        .execution_options(synchronize_session=False)
    )
