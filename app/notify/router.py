"""/api/v1/channels (admin) and /api/v1/notifications (the delivery log)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from app.api.deps import CanAdmin, CanMonitorHealth, SecretBoxDep, SessionDep, SettingsDep
from app.api.pagination import OptionalRowId, Page, RowId
from app.audit.middleware import audit_note
from app.core.errors import error_responses
from app.db.models import NotificationStatus
from app.notify.channel_service import ChannelService
from app.notify.schemas import (
    ChannelCreate,
    ChannelOut,
    ChannelPage,
    ChannelTestResult,
    ChannelUpdate,
    DeliveryAttemptOut,
    NotificationOut,
    NotificationPage,
)
from app.notify.service import NotificationService

router = APIRouter(prefix="/api/v1/channels", tags=["channels"])
notifications_router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])


def get_service(session: SessionDep, settings: SettingsDep, box: SecretBoxDep) -> ChannelService:
    return ChannelService(session, settings, box)


ServiceDep = Annotated[ChannelService, Depends(get_service)]


@router.get("", response_model=ChannelPage, responses=error_responses(401, 403))
async def list_channels(_: CanAdmin, service: ServiceDep) -> ChannelPage:
    channels = await service.list()
    return ChannelPage(items=[service.out(c) for c in channels], total=len(channels))


@router.post(
    "",
    response_model=ChannelOut,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(401, 403, 409, 422),
)
async def create_channel(data: ChannelCreate, _: CanAdmin, service: ServiceDep) -> ChannelOut:
    return service.out(await service.create(data))


@router.get("/{channel_id}", response_model=ChannelOut, responses=error_responses(401, 403, 404))
async def get_channel(channel_id: RowId, _: CanAdmin, service: ServiceDep) -> ChannelOut:
    return service.out(await service.get(channel_id))


@router.patch("/{channel_id}", response_model=ChannelOut, responses=error_responses(401, 403, 404, 409, 422))
async def update_channel(
    channel_id: RowId, data: ChannelUpdate, request: Request, _: CanAdmin, service: ServiceDep
) -> ChannelOut:
    before = service.out(await service.get(channel_id)).model_dump(
        exclude={"config", "created_at", "updated_at"}
    )
    out = service.out(await service.update(channel_id, data))
    audit_note(request, before=before, after=out.model_dump(exclude={"config", "created_at", "updated_at"}))
    return out


@router.delete(
    "/{channel_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(401, 403, 404, 409)
)
async def delete_channel(channel_id: RowId, _: CanAdmin, service: ServiceDep) -> Response:
    await service.delete(channel_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{channel_id}/test", response_model=ChannelTestResult, responses=error_responses(401, 403, 404))
async def test_channel(
    channel_id: RowId, _: CanAdmin, service: ServiceDep, settings: SettingsDep
) -> ChannelTestResult:
    """Send a test message now (bounded, SSRF-checked) and report the outcome."""
    from app.outbound.http import make_session

    async with make_session(ssrf_allow=settings.security.ssrf_allowlist) as http:
        return await service.test(channel_id, http)


@notifications_router.get("", response_model=NotificationPage, responses=error_responses(401, 403, 422))
async def list_notifications(
    _: CanMonitorHealth,
    session: SessionDep,
    page: Annotated[Page, Depends()],
    status_: Annotated[NotificationStatus | None, Query(alias="status")] = None,
    channel_id: OptionalRowId = None,
    alert_id: OptionalRowId = None,
) -> NotificationPage:
    """The outbox and its delivery log (payload-free: channel secrets are never part of it)."""
    service = NotificationService(session)
    rows, total = await service.list(
        limit=page.limit, offset=page.offset, status=status_, channel_id=channel_id, alert_id=alert_id
    )
    attempts = await service.attempts_for([n.id for n in rows])
    items = [
        NotificationOut(
            id=n.id,
            channel_id=n.channel_id,
            alert_id=n.alert_id,
            kind=n.kind,
            status=n.status,
            attempts=n.attempts,
            idempotency_key=n.idempotency_key,
            next_attempt_at=n.next_attempt_at,
            last_error=n.last_error,
            delivered_at=n.delivered_at,
            created_at=n.created_at,
            delivery_log=[DeliveryAttemptOut.model_validate(a) for a in attempts[n.id]],
        )
        for n in rows
    ]
    return NotificationPage(items=items, total=total, limit=page.limit, offset=page.offset)
