"""Request and response shapes of the channels and notifications API. Secrets never appear in clear."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Severity = Literal["info", "warning", "critical"]
NAME_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$"


class ChannelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # 0 is not false

    name: str = Field(pattern=NAME_PATTERN)
    kind: Literal["slack", "webhook", "email", "pagerduty", "opsgenie", "teams", "discord"] = Field(
        description="slack | webhook | email | pagerduty | opsgenie | teams | discord", examples=["slack"]
    )
    config: dict[str, Any] = Field(
        description="slack: {url, channel?, username?}; webhook: {url, secret?, headers?}; "
        "email: {host, port?, "
        "security?, username?, password?, from_address, to, subject_prefix?}; pagerduty: {routing_key, "
        "url?, source?}; opsgenie: {api_key, url?, tags?, source?}; teams: {url}; discord: {url, "
        "username?}. Stored encrypted, shown masked.",
        examples=[{"url": "https://hooks.slack.com/services/T000/B000/XXXX"}],
    )
    language: str | None = Field(
        default=None, description="message catalog: en, de, fr (default: alerting.default_language)"
    )
    enabled: bool = True
    severities: list[Severity] = Field(default_factory=list, description="subscribed severities; empty = all")
    matchers: dict[str, str] = Field(
        default_factory=dict,
        description="labels the alert must have (values may be shell patterns); "
        "'component' matches the component name",
    )
    escalation_only: bool = Field(
        default=False, description="reached only by escalation, never routed to directly"
    )
    escalate_to: int | None = Field(default=None, description="channel id to escalate to")
    escalate_after: float | None = Field(default=None, gt=0, description="seconds without acknowledgement")


class ChannelUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # 0 is not false

    config: dict[str, Any] | None = Field(default=None, description="keys given replace the stored ones")
    language: str | None = None
    enabled: bool | None = None
    severities: list[Severity] | None = None
    matchers: dict[str, str] | None = None
    escalation_only: bool | None = None
    escalate_to: int | None = None
    escalate_after: float | None = Field(default=None, gt=0)


class ChannelOut(BaseModel):
    id: int
    name: str
    kind: str
    config: dict[str, Any] = Field(description="masked")
    language: str
    enabled: bool
    severities: list[str]
    matchers: dict[str, str]
    escalation_only: bool
    escalate_to: int | None
    escalate_after: float | None
    source: str = Field(default="api", description="config: declared in the config file (read-only here)")
    created_at: datetime
    updated_at: datetime


class ChannelPage(BaseModel):
    items: list[ChannelOut]
    total: int


class ChannelTestResult(BaseModel):
    delivered: bool
    status_code: int | None
    latency_ms: float | None
    error: str | None
    notification_id: int


class DeliveryAttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempt: int
    at: datetime
    outcome: str
    status_code: int | None
    latency_ms: float | None
    error: str | None


class NotificationOut(BaseModel):
    id: int
    channel_id: int
    alert_id: int | None
    kind: str
    status: str
    attempts: int
    idempotency_key: str
    next_attempt_at: datetime
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
    delivery_log: list[DeliveryAttemptOut]


class NotificationPage(BaseModel):
    items: list[NotificationOut]
    total: int
    limit: int
    offset: int
