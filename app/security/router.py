"""GET /api/v1/security/stats (admin): failed logins, locked accounts, rate-limit rejections, revoked
tokens."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from app.api.deps import CanAdmin, LimiterDep, MetricsDep, SessionDep
from app.core.errors import error_responses
from app.db.models import AuditEntry, RevokedToken, User
from app.db.types import utcnow

router = APIRouter(prefix="/api/v1/security", tags=["security"])


class SecurityStats(BaseModel):
    failed_logins_total: int = Field(description="failed logins since this process started")
    failed_logins_current: int = Field(
        description="failures counted on accounts right now (reset on success)"
    )
    locked_accounts: int
    rate_limit_rejections: int = Field(description="requests refused by the rate limiter since start")
    revoked_tokens: int = Field(description="revoked tokens that have not expired yet")
    denied_writes_24h: int = Field(description="audited write attempts answered 401/403 in the last 24 hours")


@router.get("/stats", response_model=SecurityStats, responses=error_responses(401, 403))
async def security_stats(
    _: CanAdmin, session: SessionDep, metrics: MetricsDep, limiter: LimiterDep
) -> SecurityStats:
    now = utcnow()

    async def scalar(query) -> int:
        return int((await session.execute(query)).scalar_one() or 0)

    failures = metrics.registry.get_sample_value("pipeline_guard_login_failures_total") or 0
    return SecurityStats(
        failed_logins_total=int(failures),
        failed_logins_current=await scalar(select(func.coalesce(func.sum(User.failed_logins), 0))),
        locked_accounts=await scalar(select(func.count()).select_from(User).where(User.locked_until > now)),
        rate_limit_rejections=limiter.rejections,
        revoked_tokens=await scalar(
            select(func.count()).select_from(RevokedToken).where(RevokedToken.expires_at > now)
        ),
        denied_writes_24h=await scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.at >= now - timedelta(hours=24), AuditEntry.status_code.in_((401, 403)))
        ),
    )
