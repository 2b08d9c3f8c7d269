"""POST /api/v1/components/{name}/heartbeat (ping token or JWT) and /ping-token (manage_components)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Header, Query, Request

from app.api.deps import (
    AuthServiceDep,
    CanManageComponents,
    ReceiptDep,
    SchedulerDep,
    SessionDep,
    SettingsDep,
    oauth2_scheme,
)
from app.auth.permissions import Permission
from app.core.errors import Forbidden, Unauthorized, ValidationFailed, error_responses
from app.db.models import Component
from app.db.types import utcnow
from app.monitoring.heartbeat import HeartbeatService
from app.monitoring.schemas import HeartbeatIn, HeartbeatOut, PingTokenOut

router = APIRouter(prefix="/api/v1/components", tags=["heartbeats"])
HEARTBEAT_PERMISSIONS = frozenset({Permission.WRITE_METRICS, Permission.MONITOR_HEALTH})


@dataclass
class HeartbeatCaller:
    component: Component
    source: str  # "token" or "jwt"


async def heartbeat_caller(
    name: str,
    request: Request,
    session: SessionDep,
    auth: AuthServiceDep,
    settings: SettingsDep,
    bearer: Annotated[str | None, Depends(oauth2_scheme)],
    x_ping_token: Annotated[str | None, Header(description="the component's ping token")] = None,
    token: Annotated[
        str | None, Query(description="the ping token, for clients that cannot set headers")
    ] = None,
) -> HeartbeatCaller:
    """Either the component's ping token, or a JWT with write_metrics or monitor_health."""
    service = HeartbeatService(session)
    ping_token = x_ping_token or token
    if ping_token:
        component = await service.component_for_ping_token(name, ping_token)
        request.state.audit_actor = f"ping-token:{component.name}"
        return HeartbeatCaller(component, "token")
    if settings.security.enabled:
        if not bearer:
            raise Unauthorized(
                "send the component's ping token (X-Ping-Token) or 'Authorization: Bearer <token>'"
            )
        principal = await auth.authenticate(bearer)
        request.state.principal = principal
        if not principal.permissions & HEARTBEAT_PERMISSIONS:
            raise Forbidden(f"role {principal.role.value!r} may not send heartbeats")
    return HeartbeatCaller(await service.component(name), "jwt")


# The route-permission walker reads this: the route is authorised (ping token or a JWT), as for metrics.
# Any of these; a function attribute, which mypy does not model.
heartbeat_caller.__permission__ = HEARTBEAT_PERMISSIONS  # type: ignore[attr-defined]


@router.post(
    "/{name}/heartbeat", response_model=HeartbeatOut, responses=error_responses(401, 403, 404, 409, 422)
)
async def heartbeat(
    request: Request,
    background: BackgroundTasks,
    receipt: ReceiptDep,
    session: SessionDep,
    scheduler: SchedulerDep,
    caller: Annotated[HeartbeatCaller, Depends(heartbeat_caller)],
    body: HeartbeatIn | None = None,
) -> HeartbeatOut:
    """A job's ping: `start`, `success` (default) or `fail`, with an optional duration and message, and
    the run it reports (`rid`, a UUID: as a ping URL's `?rid=`)."""
    unknown = sorted(set(request.query_params) - {"token"})
    if unknown:  # `?status=fail` must never be recorded as a success
        raise ValidationFailed(
            "unknown query parameter(s): the status goes in the JSON body (or use /ping/<token>/fail)",
            details={"fields": [{"field": f"query.{n}", "message": "unknown parameter"} for n in unknown]},
        )
    body = body or HeartbeatIn()
    component = caller.component
    receipt.hold(component.name)  # its heartbeat waits for this ping until it is committed
    received_at = utcnow()
    recorded = await HeartbeatService(session).record(
        component,
        status=body.status,
        duration_s=body.duration_seconds,
        message=body.message,
        source=caller.source,
        now=received_at,
        rid=body.rid,
    )
    if recorded.judged:  # an unjudged ping left the state as it was: nothing new to check
        # After the response, i.e. after the commit: the scheduler must read the stored ping.
        background.add_task(scheduler.request_check, component.id)
    # received_at: the ping's time, stored as state.last_ping_at when judged
    return HeartbeatOut.answer(
        component.name, body.status, received_at, recorded.duration_s, body.rid, recorded.judged
    )


@router.post("/{name}/ping-token", response_model=PingTokenOut, responses=error_responses(401, 403, 404))
async def new_ping_token(name: str, _: CanManageComponents, session: SessionDep) -> PingTokenOut:
    """Generate the component's ping token (replacing the previous one). Shown once; only a hash is kept."""
    token = await HeartbeatService(session).new_ping_token(name)
    return PingTokenOut(component=name, token=token)
