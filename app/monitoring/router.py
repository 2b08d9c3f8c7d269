"""/api/v1/status, /api/v1/status/detailed, /api/v1/components/{name}/history and /uptime."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.api.deps import CanMonitorHealth, RuntimeDep, SessionDep
from app.api.pagination import Page
from app.core.errors import error_responses
from app.monitoring.schemas import (
    DetailedStatus,
    HistoryOut,
    RootCauseOut,
    SystemStatus,
    UptimeOut,
    UptimeWindow,
)
from app.monitoring.service import StatusService

router = APIRouter(prefix="/api/v1", tags=["status"])


def get_service(rt: RuntimeDep, session: SessionDep) -> StatusService:
    return StatusService(session, rt)


ServiceDep = Annotated[StatusService, Depends(get_service)]


@router.get("/status", response_model=SystemStatus, responses=error_responses(401, 403))
async def system_status(
    _: CanMonitorHealth, service: ServiceDep, page: Annotated[Page, Depends()]
) -> SystemStatus:
    """Overall health, the number of components per status, one page of components (by name):
    status, last check, current incident, uptime over 24 h; and the dependency graph's root causes."""
    from app.healing.rootcause import root_causes

    status = await service.system_status(limit=page.limit, offset=page.offset)
    status.root_causes = [RootCauseOut(**cause) for cause in await root_causes(service.session)]
    return status


@router.get("/status/detailed", response_model=DetailedStatus, responses=error_responses(401, 403))
async def detailed_status(_: CanMonitorHealth, service: ServiceDep) -> DetailedStatus:
    """Counts by status, checks/s, scheduler lag and overruns, plus sections other domains fill."""
    return await service.detailed()


@router.get(
    "/components/{name}/history", response_model=HistoryOut, responses=error_responses(401, 403, 404, 422)
)
async def component_history(
    name: str,
    _: CanMonitorHealth,
    service: ServiceDep,
    page: Annotated[Page, Depends()],
    results_limit: Annotated[int, Query(ge=0, le=1000)] = 50,
) -> HistoryOut:
    """Transitions (newest first, paginated), the most recent raw results and the last 24 hourly rollups."""
    return await service.history(name, limit=page.limit, offset=page.offset, results_limit=results_limit)


@router.get(
    "/components/{name}/uptime", response_model=UptimeOut, responses=error_responses(401, 403, 404, 422)
)
async def component_uptime(
    name: str,
    _: CanMonitorHealth,
    service: ServiceDep,
    window: UptimeWindow = "24h",
) -> UptimeOut:
    """Share of checks that were up (degraded counts as up) over 1h, 24h, 7d or 30d."""
    return await service.uptime(name, window)
