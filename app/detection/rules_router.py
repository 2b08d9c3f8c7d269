"""/api/v1/rules: detection rules CRUD (manage_components); /api/v1/rules/anomalies: what fired."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from app.auth.permissions import Permission
from app.api.deps import Requires, SessionDep
from app.detection.rules_schemas import AnomalyOut, RuleCreate, RuleOut, RuleUpdate
from app.detection.rules_service import RuleService
from app.core.errors import error_responses
from app.api.pagination import Page, RowId

router = APIRouter(prefix="/api/v1/rules", tags=["rules"])


def get_service(request: Request, session: SessionDep) -> RuleService:
    return RuleService(session, request.app.state.guard)


ServiceDep = Annotated[RuleService, Depends(get_service)]


@router.get("", response_model=list[RuleOut], responses=error_responses(401, 403))
async def list_rules(_: Requires(Permission.READ_METRICS), service: ServiceDep, component: str | None = None):
    return await service.list(component)


@router.post("", response_model=RuleOut, status_code=status.HTTP_201_CREATED, responses=error_responses(401, 403, 409, 422))
async def create_rule(data: RuleCreate, _: Requires(Permission.MANAGE_COMPONENTS), service: ServiceDep):
    """threshold (operator, value, for_seconds) · anomaly (sensitivity) · trend (value, horizon_seconds, window_seconds)."""
    return await service.create(data)


@router.get("/anomalies", response_model=list[AnomalyOut], responses=error_responses(401, 403))
async def list_anomalies(_: Requires(Permission.READ_METRICS), service: ServiceDep, page: Annotated[Page, Depends()],
                         active: bool | None = None, component: str | None = None):
    return await service.anomalies(active=active, component=component, limit=page.limit, offset=page.offset)


@router.get("/{rule_id:int}", response_model=RuleOut, responses=error_responses(401, 403, 404))
async def get_rule(rule_id: RowId, _: Requires(Permission.READ_METRICS), service: ServiceDep):
    return await service.get(rule_id)


@router.patch("/{rule_id:int}", response_model=RuleOut, responses=error_responses(401, 403, 404, 409, 422))
async def update_rule(rule_id: RowId, data: RuleUpdate, _: Requires(Permission.MANAGE_COMPONENTS), service: ServiceDep):
    return await service.update(rule_id, data)


@router.delete("/{rule_id:int}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(401, 403, 404, 409))
async def delete_rule(rule_id: RowId, _: Requires(Permission.MANAGE_COMPONENTS), service: ServiceDep) -> Response:
    await service.delete(rule_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
