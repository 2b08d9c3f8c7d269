"""/api/v1/components: the registry's CRUD."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from app.api.deps import (
    CanManageComponents,
    CanMonitorHealth,
    EventsDep,
    MetricsDep,
    SecretBoxDep,
    SessionDep,
    StrategiesDep,
)
from app.api.pagination import LabelFilter, Page, parse_label_filters
from app.components.schemas import ComponentCreate, ComponentOut, ComponentPage, ComponentUpdate
from app.components.service import ComponentService
from app.core.errors import error_responses
from app.db.models import Component, HealthStatus
from app.db.types import utcnow
from app.platform.events import ComponentDeleted

router = APIRouter(prefix="/api/v1/components", tags=["components"])


def get_service(session: SessionDep, box: SecretBoxDep, strategies: StrategiesDep) -> ComponentService:
    return ComponentService(session, box, strategies)


ServiceDep = Annotated[ComponentService, Depends(get_service)]


@router.get("", response_model=ComponentPage, responses=error_responses(401, 403, 422))
async def list_components(
    _: CanMonitorHealth,
    service: ServiceDep,
    page: Annotated[Page, Depends()],
    region: str | None = None,
    status_: Annotated[
        HealthStatus | None,
        Query(alias="status"),
    ] = None,
    enabled: bool | None = None,
    label: Annotated[
        list[LabelFilter] | None, Query(description="key=value; repeat for several (all must match)")
    ] = None,
) -> ComponentPage:
    items, total = await service.list(
        limit=page.limit,
        offset=page.offset,
        region=region,
        status=status_,
        enabled=enabled,
        labels=parse_label_filters(label),
    )
    return ComponentPage(
        items=[ComponentOut.model_validate(c) for c in items],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@router.post(
    "",
    response_model=ComponentOut,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(401, 403, 409, 422),
)
async def create_component(
    data: ComponentCreate, _: CanManageComponents, service: ServiceDep, metrics: MetricsDep
) -> Component:
    component = await service.create(data)
    metrics.prime_healing_policy(component.name, component.recovery)
    return component


@router.get("/{name}", response_model=ComponentOut, responses=error_responses(401, 403, 404))
async def get_component(name: str, _: CanMonitorHealth, service: ServiceDep) -> Component:
    return await service.get(name)


@router.patch("/{name}", response_model=ComponentOut, responses=error_responses(401, 403, 404, 409, 422))
async def update_component(
    name: str, data: ComponentUpdate, _: CanManageComponents, service: ServiceDep, metrics: MetricsDep
) -> Component:
    component = await service.update(name, data)
    metrics.prime_healing_policy(component.name, component.recovery)
    return component


@router.delete(
    "/{name}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(401, 403, 404, 409)
)
async def delete_component(
    name: str, _: CanManageComponents, service: ServiceDep, session: SessionDep, events: EventsDep
) -> Response:
    deleted = await service.delete(name)
    # Other domains drop what they keep by name (healing's budget, breaker and incidents) in this
    # same transaction, so nothing of the old component applies to a new one of that name.
    await events.publish(
        ComponentDeleted(component=deleted.name, component_id=deleted.id, at=utcnow()), session
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
