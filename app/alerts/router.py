"""/api/v1/alerts and /api/v1/silences."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, status

from app.alerts.schemas import (
    AckRequest,
    AlertDetail,
    AlertEventOut,
    AlertOut,
    AlertPage,
    ResolveRequest,
    SilenceCreate,
    SilenceOut,
    SilencePage,
)
from app.alerts.service import AlertService
from app.alerts.silences import SilenceService
from app.api.deps import CanMonitorHealth, CanTriggerHealing, SessionDep, SettingsDep
from app.api.pagination import DateTimeQuery, Page, RowId
from app.audit.middleware import audit_note
from app.core.errors import error_responses
from app.db.models import AlertStatus, Severity
from app.db.types import utcnow

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])
silences_router = APIRouter(prefix="/api/v1/silences", tags=["silences"])

ACTIVE = [AlertStatus.FIRING, AlertStatus.ACKNOWLEDGED, AlertStatus.SILENCED]
# Unknown values are refused (422 naming the allowed ones), never matched against nothing.
StatusName = Literal["firing", "acknowledged", "silenced", "resolved", "all"]
StatusFilter = Annotated[
    list[StatusName] | None,
    Query(alias="status", description="repeat for several; default: every active status (not resolved)"),
]


def get_service(session: SessionDep, settings: SettingsDep) -> AlertService:
    return AlertService(session, settings)


ServiceDep = Annotated[AlertService, Depends(get_service)]


@router.get("", response_model=AlertPage, responses=error_responses(401, 403, 422))
async def list_alerts(
    _: CanMonitorHealth,
    service: ServiceDep,
    page: Annotated[Page, Depends()],
    status_: StatusFilter = None,
    severity: Severity | None = None,
    component: str | None = None,
    since: Annotated[DateTimeQuery, Query(description="only alerts seen at or after this time")] = None,
) -> AlertPage:
    wanted = status_ or [s.value for s in ACTIVE]
    statuses = None if "all" in wanted else wanted
    items, total = await service.list(
        limit=page.limit,
        offset=page.offset,
        statuses=statuses,
        severity=severity,
        component=component,
        since=since,
    )
    return AlertPage(items=[AlertOut.of(a) for a in items], total=total, limit=page.limit, offset=page.offset)


@router.get("/{alert_id}", response_model=AlertDetail, responses=error_responses(401, 403, 404))
async def get_alert(alert_id: RowId, _: CanMonitorHealth, service: ServiceDep) -> AlertDetail:
    alert = await service.get(alert_id)
    history = [AlertEventOut.model_validate(e) for e in await service.history(alert_id)]
    return AlertDetail(**AlertOut.of(alert).model_dump(), history=history)


@router.post("/{alert_id}/ack", response_model=AlertOut, responses=error_responses(401, 403, 404, 409, 422))
async def acknowledge_alert(
    alert_id: RowId,
    request: Request,
    principal: CanTriggerHealing,
    service: ServiceDep,
    data: AckRequest | None = None,
) -> AlertOut:
    data = data or AckRequest()
    alert = await service.acknowledge(
        alert_id, actor=principal.username, until=data.until, comment=data.comment
    )
    audit_note(
        request, after={"status": alert.status, "until": data.until.isoformat() if data.until else None}
    )
    return AlertOut.of(alert)


@router.post(
    "/{alert_id}/resolve", response_model=AlertOut, responses=error_responses(401, 403, 404, 409, 422)
)
async def resolve_alert(
    alert_id: RowId,
    request: Request,
    principal: CanTriggerHealing,
    service: ServiceDep,
    data: ResolveRequest | None = None,
) -> AlertOut:
    data = data or ResolveRequest()
    action = data.resolution_action or f"resolved by operator {principal.username}"
    before = (await service.get(alert_id)).status
    alert = await service.resolve(alert_id, resolution_action=action, actor=principal.username)
    audit_note(
        request, before={"status": before}, after={"status": alert.status, "resolution_action": action}
    )
    return AlertOut.of(alert)


# --- silences ----------------------------------------------------------------------------------


def get_silences(session: SessionDep) -> SilenceService:
    return SilenceService(session)


SilencesDep = Annotated[SilenceService, Depends(get_silences)]


@silences_router.get("", response_model=SilencePage, responses=error_responses(401, 403, 422))
async def list_silences(
    _: CanMonitorHealth,
    silences: SilencesDep,
    page: Annotated[Page, Depends()],
    include_expired: bool = False,
) -> SilencePage:
    items, total = await silences.list(limit=page.limit, offset=page.offset, include_expired=include_expired)
    now = utcnow()
    return SilencePage(
        items=[SilenceOut.of(s, now) for s in items], total=total, limit=page.limit, offset=page.offset
    )


@silences_router.post(
    "",
    response_model=SilenceOut,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(401, 403, 409, 422),
)
async def create_silence(
    data: SilenceCreate, principal: CanTriggerHealing, silences: SilencesDep
) -> SilenceOut:
    silence = await silences.create(
        component=data.component,
        labels=data.labels,
        starts_at=data.starts_at,
        ends_at=data.ends_at,
        created_by=principal.username,
        comment=data.comment,
        duration=data.duration,
        schedule=data.schedule,
        tz=data.tz,
        name=data.name,
    )
    return SilenceOut.of(silence, utcnow())


@silences_router.get("/{silence_id}", response_model=SilenceOut, responses=error_responses(401, 403, 404))
async def get_silence(silence_id: RowId, _: CanMonitorHealth, silences: SilencesDep) -> SilenceOut:
    return SilenceOut.of(await silences.get(silence_id), utcnow())


@silences_router.delete("/{silence_id}", response_model=SilenceOut, responses=error_responses(401, 403, 404))
async def expire_silence(silence_id: RowId, _: CanTriggerHealing, silences: SilencesDep) -> SilenceOut:
    """Expire a silence now (it stays listed with include_expired=true)."""
    return SilenceOut.of(await silences.expire(silence_id), utcnow())
