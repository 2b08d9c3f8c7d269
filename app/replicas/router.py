"""/api/v1/replicas: the running guard processes, their heartbeats and the components each owns."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.api.deps import CanAdmin, LeasesDep, SessionDep, SettingsDep
from app.api.pagination import Page
from app.core.errors import error_responses
from app.replicas.schemas import ReplicaPage
from app.replicas.service import ReplicaService

router = APIRouter(prefix="/api/v1/replicas", tags=["replicas"])


@router.get("", response_model=ReplicaPage, responses=error_responses(401, 403, 422, 503))
async def list_replicas(
    _: CanAdmin,
    session: SessionDep,
    settings: SettingsDep,
    leases: LeasesDep,
    page: Annotated[Page, Depends()],
    include_gone: bool = False,
    components_limit: Annotated[
        int, Query(ge=0, le=1000, description="component names listed per replica")
    ] = 100,
) -> ReplicaPage:
    """Replicas (live first) with region, version, heartbeat (database clock), and the components whose
    lease each holds: the count and the first `components_limit` names."""
    service = ReplicaService(
        session,
        ttl=settings.replication.lease_ttl,
        this_replica=None if leases.detached else leases.replica_id,
    )
    return await service.list(
        limit=page.limit, offset=page.offset, include_gone=include_gone, names_limit=components_limit
    )
