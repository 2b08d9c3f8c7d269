"""/api/v1/audit (admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict

from app.api.deps import CanAdmin, SessionDep
from app.api.pagination import DateTimeQuery, Page
from app.audit.service import AuditService
from app.core.errors import error_responses

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    username: str | None
    role: str | None
    action: str
    method: str
    path: str
    target: dict[str, Any]
    summary: dict[str, Any]
    client: str | None
    request_id: str | None
    status_code: int


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    total: int
    limit: int
    offset: int


@router.get("", response_model=AuditPage, responses=error_responses(401, 403, 422))
async def list_audit(
    _: CanAdmin,
    session: SessionDep,
    page: Annotated[Page, Depends()],
    username: str | None = None,
    action: str | None = None,
    method: str | None = None,
    status_code: Annotated[int | None, Query(ge=100, le=599)] = None,
    since: DateTimeQuery = None,
    until: DateTimeQuery = None,
) -> AuditPage:
    items, total = await AuditService(session).list(
        limit=page.limit,
        offset=page.offset,
        username=username,
        action=action,
        method=method,
        status_code=status_code,
        since=since,
        until=until,
    )
    return AuditPage(
        items=[AuditEntryOut.model_validate(i) for i in items],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )
