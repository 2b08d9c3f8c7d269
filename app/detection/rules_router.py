"""/api/v1/rules: detection rules CRUD (manage_components); /api/v1/rules/anomalies: what fired."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from app.api.deps import CanManageComponents, CanReadMetrics, DetectionDep, SessionDep, SettingsDep
from app.api.pagination import Page, RowId
from app.core.errors import error_responses
from app.detection.rules_schemas import AnomalyOut, RuleCreate, RuleOut, RuleUpdate
from app.detection.rules_service import RuleService

router = APIRouter(prefix="/api/v1/rules", tags=["rules"])


def get_service(session: SessionDep, settings: SettingsDep, detection: DetectionDep) -> RuleService:
    return RuleService(session, settings, detection.evaluator)


ServiceDep = Annotated[RuleService, Depends(get_service)]


@router.get("", response_model=list[RuleOut], responses=error_responses(401, 403))
async def list_rules(_: CanReadMetrics, service: ServiceDep, component: str | None = None):
    return await service.list(component)


@router.post(
    "",
    response_model=RuleOut,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(401, 403, 409, 422),
)
async def create_rule(data: RuleCreate, _: CanManageComponents, service: ServiceDep):
    """threshold (operator, value, for_seconds) · anomaly (sensitivity) · trend (value, horizon_seconds,
    window_seconds)."""
    return await service.create(data)


@router.get("/anomalies", response_model=list[AnomalyOut], responses=error_responses(401, 403))
async def list_anomalies(
    _: CanReadMetrics,
    service: ServiceDep,
    page: Annotated[Page, Depends()],
    active: bool | None = None,
    component: str | None = None,
):
    return await service.anomalies(active=active, component=component, limit=page.limit, offset=page.offset)


@router.get("/{rule_id:int}", response_model=RuleOut, responses=error_responses(401, 403, 404))
async def get_rule(rule_id: RowId, _: CanReadMetrics, service: ServiceDep):
    return await service.get(rule_id)


@router.patch("/{rule_id:int}", response_model=RuleOut, responses=error_responses(401, 403, 404, 409, 422))
async def update_rule(rule_id: RowId, data: RuleUpdate, _: CanManageComponents, service: ServiceDep):
    return await service.update(rule_id, data)


@router.delete(
    "/{rule_id:int}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(401, 403, 404, 409)
)
async def delete_rule(rule_id: RowId, _: CanManageComponents, service: ServiceDep) -> Response:
    await service.delete(rule_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
