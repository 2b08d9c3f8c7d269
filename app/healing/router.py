"""/api/v1/healing: manual trigger, attempt history, approvals, stats, breaker re-arm."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, status

from app.api.deps import CanMonitorHealth, CanTriggerHealing, CoreDep, HealingDep, SessionDep
from app.api.pagination import DateTimeQuery, OptionalRowId, Page, RowId
from app.core.errors import error_responses
from app.db.models.healing import AttemptState, HealingAttempt  # rows: response_model serialises
from app.healing.schemas import AttemptOut, AttemptPage, BreakerOut, HealingStats, TriggerRequest
from app.healing.service import HealingService

router = APIRouter(prefix="/api/v1/healing", tags=["healing"])


def get_service(session: SessionDep, core: CoreDep) -> HealingService:
    return HealingService(session, core)


ServiceDep = Annotated[HealingService, Depends(get_service)]


@router.get("/attempts", response_model=AttemptPage, responses=error_responses(401, 403, 422))
async def list_attempts(
    _: CanMonitorHealth,
    service: ServiceDep,
    page: Annotated[Page, Depends()],
    component: str | None = None,
    state: AttemptState | None = None,
    strategy: str | None = None,
    incident_id: OptionalRowId = None,
    since: DateTimeQuery = None,
) -> AttemptPage:
    items, total = await service.list_attempts(
        component=component,
        state=state,
        strategy=strategy,
        incident_id=incident_id,
        since=since,
        limit=page.limit,
        offset=page.offset,
    )
    return AttemptPage(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/attempts/{attempt_id}", response_model=AttemptOut, responses=error_responses(401, 403, 404))
async def get_attempt(attempt_id: RowId, _: CanMonitorHealth, service: ServiceDep) -> HealingAttempt:
    return await service.get_attempt(attempt_id)


@router.post(
    "/attempts/{attempt_id}/approve", response_model=AttemptOut, responses=error_responses(401, 403, 404, 409)
)
async def approve_attempt(
    attempt_id: RowId, principal: CanTriggerHealing, engine: HealingDep, service: ServiceDep
) -> HealingAttempt:
    await engine.approve(attempt_id, principal.username)
    return await service.get_attempt(attempt_id)


@router.post(
    "/attempts/{attempt_id}/reject", response_model=AttemptOut, responses=error_responses(401, 403, 404, 409)
)
async def reject_attempt(
    attempt_id: RowId, principal: CanTriggerHealing, engine: HealingDep, service: ServiceDep
) -> HealingAttempt:
    await engine.reject(attempt_id, principal.username)
    return await service.get_attempt(attempt_id)


@router.get("/stats", response_model=HealingStats, responses=error_responses(401, 403))
async def healing_stats(_: CanMonitorHealth, service: ServiceDep) -> HealingStats:
    return HealingStats(**await service.stats())


@router.post("/breakers/{component}/reset", response_model=BreakerOut, responses=error_responses(401, 403))
async def reset_breaker(component: str, principal: CanTriggerHealing, engine: HealingDep) -> BreakerOut:
    was_open = await engine.reset_breaker(component, principal.username)
    return BreakerOut(component=component, was_open=was_open, breaker_open=False)


@router.post(
    "/{component}",
    response_model=AttemptOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(401, 403, 404, 409, 422),
)
async def trigger_healing(
    principal: CanTriggerHealing,
    engine: HealingDep,
    service: ServiceDep,
    component: Annotated[str, Path(max_length=128)],
    body: TriggerRequest | None = None,
) -> HealingAttempt:
    attempt_id = await engine.trigger(
        component, strategy=body.strategy if body else None, principal=principal.username
    )
    return await service.get_attempt(attempt_id)
