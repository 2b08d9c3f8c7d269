"""Request and response shapes of the alerts and silences API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from app.alerts.windows import next_window, open_window
from app.config.sections import parse_duration
from app.core.instants import UtcDateTime
from app.db.models import Alert, Silence


def _duration(value: Any) -> Any:
    return None if value is None else parse_duration(value)


class AlertOut(BaseModel):
    id: int
    fingerprint: str
    component: str
    component_id: int | None
    severity: str
    message: str
    source: str
    status: str
    labels: dict[str, str]
    metadata: dict[str, Any]
    incident_id: int | None
    timestamp: datetime = Field(description="when the condition was first seen (the seed's Alert.timestamp)")
    first_seen: datetime
    last_seen: datetime
    count: int
    escalation_level: int
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    acknowledged_until: datetime | None
    resolved: bool
    resolved_at: datetime | None
    resolved_by: str | None
    resolution_action: str | None
    caused_by: str | None = Field(
        None,
        description="root cause: the unhealthy upstream component this alert is "
        "attributed to (not notified on its own)",
    )
    affected: list[str] = Field(default_factory=list, description="components that depend on this one")

    @classmethod
    def of(cls, alert: Alert) -> AlertOut:
        return cls(
            id=alert.id,
            fingerprint=alert.fingerprint,
            component=alert.component,
            component_id=alert.component_id,
            severity=alert.severity,
            message=alert.message,
            source=alert.source,
            status=alert.status,
            labels=alert.labels or {},
            metadata=alert.meta or {},
            incident_id=alert.incident_id,
            timestamp=alert.first_seen,
            first_seen=alert.first_seen,
            last_seen=alert.last_seen,
            count=alert.count,
            escalation_level=alert.escalation_level,
            acknowledged_by=alert.acknowledged_by,
            acknowledged_at=alert.acknowledged_at,
            acknowledged_until=alert.acknowledged_until,
            resolved=alert.resolved,
            resolved_at=alert.resolved_at,
            resolved_by=alert.resolved_by,
            resolution_action=alert.resolution_action,
            caused_by=(alert.meta or {}).get("caused_by"),
            affected=list((alert.meta or {}).get("affected") or []),
        )


class AlertEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime
    kind: str
    actor: str | None
    detail: str | None


class AlertDetail(AlertOut):
    history: list[AlertEventOut]


class AlertPage(BaseModel):
    items: list[AlertOut]
    total: int
    limit: int
    offset: int


class AckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    until: UtcDateTime | None = Field(default=None, description="snooze: the alert re-opens at this time")
    comment: str | None = Field(default=None, max_length=1000)


class ResolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution_action: str | None = Field(
        default=None, max_length=2000, description="what fixed it; defaults to 'resolved by operator <you>'"
    )


class SilenceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    component: str | None = Field(
        default=None, max_length=128, description="name or shell pattern (etl-*); empty = any"
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="every label must match (values may be patterns)"
    )
    starts_at: UtcDateTime | None = None
    ends_at: UtcDateTime | None = Field(
        default=None,
        description="one-off: when it ends (or give a duration); recurring: when the recurrence stops",
    )
    duration: Annotated[float | None, BeforeValidator(_duration)] = Field(
        default=None,
        description="one-off: how long from starts_at; recurring: how long each window stays open "
        "(30m, 2h, or seconds)",
        examples=["2h"],
    )
    schedule: str | None = Field(
        default=None,
        max_length=200,
        examples=["0 2 * * 0"],
        description="recurring window: a cron expression; a window opens each time it matches",
    )
    tz: str | None = Field(
        default=None, max_length=64, description="the schedule's IANA time zone (default UTC)"
    )
    name: str | None = Field(
        default=None,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
        description="optional unique name",
    )
    comment: str = Field(default="", max_length=2000)


class MaintenanceOpen(BaseModel):
    model_config = ConfigDict(extra="forbid")

    duration: Annotated[float, BeforeValidator(_duration)] = Field(
        description="the window closes by itself after this long (30m, 2h, or seconds)", examples=["30m"]
    )
    comment: str | None = Field(default=None, max_length=2000)


class SilenceOut(BaseModel):
    id: int
    name: str | None
    component: str | None
    labels: dict[str, str]
    starts_at: datetime
    ends_at: datetime
    schedule: str | None
    tz: str | None
    duration_seconds: float | None
    source: str
    created_by: str
    comment: str
    active: bool
    window_ends_at: datetime | None = Field(description="while active: when the open window closes")
    next_window_at: datetime | None = Field(description="recurring: when the next window opens")

    @classmethod
    def of(cls, silence: Silence, now: datetime) -> SilenceOut:
        window, upcoming = open_window(silence, now), next_window(silence, now)
        return cls(
            id=silence.id,
            name=silence.name,
            component=silence.component,
            labels=silence.labels or {},
            starts_at=silence.starts_at,
            ends_at=silence.ends_at,
            schedule=silence.schedule,
            tz=silence.tz,
            duration_seconds=silence.duration_seconds,
            source=silence.source or "api",
            created_by=silence.created_by,
            comment=silence.comment,
            active=window is not None,
            window_ends_at=window[1] if window else None,
            next_window_at=upcoming[0] if upcoming else None,
        )


class SilencePage(BaseModel):
    items: list[SilenceOut]
    total: int
    limit: int
    offset: int
