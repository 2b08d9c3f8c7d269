"""A pipeline opens and closes a maintenance window for its own component.

``POST /api/v1/components/{name}/maintenance`` opens a window (a silence of exactly that component,
``source: component``) for at most ``duration``; ``DELETE …/maintenance/{id}`` closes it early. The
caller is the component's ping token (a job that may send heartbeats may also say it is being
worked on, for itself only) or a user with ``trigger_healing``. The duration is the safety net: a
pipeline that dies inside its window does not silence the component for longer.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, status

from app.alerts.maintenance import publish_maintenance
from app.alerts.schemas import MaintenanceOpen, SilenceOut
from app.alerts.silences import SilenceService
from app.api.deps import AuthServiceDep, RuntimeDep, SessionDep, SettingsDep, oauth2_scheme
from app.api.pagination import RowId
from app.auth.permissions import Permission
from app.core.errors import Forbidden, NotFound, Unauthorized, error_responses
from app.db.models import Component
from app.db.types import utcnow
from app.monitoring.heartbeat import HeartbeatService

router = APIRouter(prefix="/api/v1/components", tags=["silences"])
SOURCE = "component"


async def maintenance_caller(
    name: str,
    request: Request,
    session: SessionDep,
    auth: AuthServiceDep,
    settings: SettingsDep,
    bearer: Annotated[str | None, Depends(oauth2_scheme)],
    x_ping_token: Annotated[str | None, Header(description="the component's ping token")] = None,
) -> tuple[Component, str]:
    """(component, who): the component's own ping token, or a JWT with trigger_healing."""
    service = HeartbeatService(session)
    if x_ping_token:
        component = await service.component_for_ping_token(name, x_ping_token)
        request.state.audit_actor = f"ping-token:{component.name}"
        return component, f"ping-token:{component.name}"
    if not settings.security.enabled:
        return await service.component(name), "anonymous"
    if not bearer:
        raise Unauthorized(
            "send the component's ping token (X-Ping-Token) or 'Authorization: Bearer <token>'"
        )
    principal = await auth.authenticate(bearer)
    request.state.principal = principal
    if Permission.TRIGGER_HEALING not in principal.permissions:
        raise Forbidden(f"role {principal.role.value!r} may not open maintenance windows")
    return await service.component(name), principal.username


# The route-permission walker reads this (the ping token is the other way in).
maintenance_caller.__permission__ = frozenset({Permission.TRIGGER_HEALING})  # type: ignore[attr-defined]
Caller = Annotated[tuple[Component, str], Depends(maintenance_caller)]


@router.post(
    "/{name}/maintenance",
    response_model=SilenceOut,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(401, 403, 404, 422),
)
async def open_maintenance(
    data: MaintenanceOpen, caller: Caller, session: SessionDep, rt: RuntimeDep
) -> SilenceOut:
    """Open a maintenance window for this component now, for at most `duration`."""
    component, who = caller
    silence = await SilenceService(session).create(
        component=component.name,
        labels={},
        starts_at=None,
        ends_at=None,
        duration=data.duration,
        created_by=who[:64],
        comment=data.comment or f"maintenance opened by {who}",
        source=SOURCE,
    )
    await publish_maintenance(rt.metrics, rt.alerts.maintenance_published, session)
    return SilenceOut.of(silence, utcnow())


@router.delete(
    "/{name}/maintenance/{silence_id}", response_model=SilenceOut, responses=error_responses(401, 403, 404)
)
async def close_maintenance(
    silence_id: RowId, caller: Caller, session: SessionDep, rt: RuntimeDep
) -> SilenceOut:
    """Close a window this component's pipeline opened (it stays listed as expired)."""
    component, _ = caller
    service = SilenceService(session)
    silence = await service.get(silence_id)
    if silence.component != component.name or silence.source != SOURCE:
        raise NotFound(f"no maintenance window {silence_id} opened for component {component.name!r}")
    expired = await service.expire(silence_id)
    await publish_maintenance(rt.metrics, rt.alerts.maintenance_published, session)
    return SilenceOut.of(expired, utcnow())
