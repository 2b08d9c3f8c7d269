"""Request and response shapes of the status, history, uptime and heartbeat APIs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.monitoring.run_ids import run_id


class IncidentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    opened_at: datetime
    closed_at: datetime | None = None
    opening_status: str
    worst_status: str
    reason: str
    close_reason: str | None = None
    caused_by: str | None = Field(
        None, description="the unhealthy upstream component this incident is attributed to"
    )
    suppressed: bool = Field(
        False,
        description="no notification and no healing of its own: attributed to an "
        "upstream root, or held until its upstream is known healthy",
    )
    held_until: datetime | None = None


class RootCauseOut(BaseModel):
    component: str
    status: str
    affected: list[str] = Field(description="components that depend on it, directly or transitively")
    unhealthy: list[str] = Field(default_factory=list, description="those of them unhealthy now")


class ComponentStatusOut(BaseModel):
    name: str
    status: str
    critical: bool
    status_since: datetime | None = None
    last_check_at: datetime | None = None
    last_outcome: str | None = None
    last_detail: str | None = None
    last_latency_ms: float | None = None
    uptime_24h: float | None = Field(None, description="percent of checks up in the last 24 h")
    current_incident: IncidentOut | None = None


class SystemStatus(BaseModel):
    overall_health: str
    root_causes: list[RootCauseOut] = Field(
        default_factory=list,
        description="unhealthy components with no unhealthy upstream that others depend on",
    )
    timestamp: datetime
    total: int = Field(description="monitored components (enabled, with a check)")
    limit: int | None = None
    offset: int = 0
    counts_by_status: dict[str, int] = Field(default_factory=dict)
    components: list[ComponentStatusOut] = Field(description="one page, by name")


class DetailedStatus(BaseModel):
    overall_health: str
    timestamp: datetime
    counts_by_status: dict[str, int]
    open_incidents: int
    scheduler: dict[str, Any]
    healing: dict[str, Any] = Field(default_factory=dict)
    cache: dict[str, Any] = Field(default_factory=dict)
    sections: dict[str, Any] = Field(default_factory=dict, description="other sections registered by domains")


class TransitionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    previous: str
    current: str
    reason: str
    result_ids: list[int]
    summary: dict[str, Any]
    incident_id: int | None = None


class ResultOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    observed_at: datetime
    outcome: str
    latency_ms: float | None = None
    detail: str


class RollupOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    hour: datetime
    count: int
    failures: int
    degraded: int
    latency_min_ms: float | None = None
    latency_mean_ms: float | None = None
    latency_max_ms: float | None = None
    latency_p95_ms: float | None = None


class HistoryOut(BaseModel):
    component: str
    transitions: list[TransitionOut]
    transitions_total: int
    limit: int
    offset: int
    recent_results: list[ResultOut]
    hourly: list[RollupOut]


UptimeWindow = Literal["1h", "24h", "7d", "30d"]


class UptimeOut(BaseModel):
    component: str
    window: str
    since: datetime
    checks: int
    failures: int
    degraded: int
    uptime_percent: float | None
    source: str = Field(description="raw, rollups or rollups+raw")


class HeartbeatIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # false is not 0 seconds, "30" not 30

    status: Literal["start", "success", "fail"] = "success"
    duration_seconds: float | None = Field(None, ge=0, le=30 * 86400)
    message: str | None = Field(None, max_length=1000)
    rid: str | None = Field(
        None,
        description="the run this heartbeat reports (healthchecks.io's run id, a UUID): a finish is timed "
        "from the same rid's start, and one of a run that started before the recovery action in flight "
        "is stored but not judged",
    )

    @field_validator("rid")
    @classmethod
    def _one_run_id(cls, value: str | None) -> str | None:
        return None if value is None else run_id(value)


REPLACED_RUN = (
    "run started before the recovery action in flight: stored, not judged "
    "(the rerun is judged on its own runs)"
)


class HeartbeatOut(BaseModel):
    component: str
    status: str
    received_at: datetime
    duration_seconds: float | None = None
    rid: str | None = Field(
        None, description="the run this ping reports (a ping URL's ?rid=, the body's rid)"
    )
    judged: bool = Field(
        True,
        description="false: the run started before the recovery action in flight (the run it replaced); "
        "the ping is stored but judges neither the component nor the rerun",
    )
    detail: str | None = None

    @classmethod
    def answer(
        cls,
        component: str,
        status: str,
        received_at: datetime,
        duration_seconds: float | None,
        rid: str | None,
        judged: bool,
    ) -> HeartbeatOut:
        """The answer to a stored ping, saying why when it judged nothing."""
        return cls(
            component=component,
            status=status,
            received_at=received_at,
            duration_seconds=duration_seconds,
            rid=rid,
            judged=judged,
            detail=None if judged else REPLACED_RUN,
        )


class PingTokenOut(BaseModel):
    component: str
    token: str = Field(description="shown once; send it as X-Ping-Token (or ?token=) with heartbeats")
    header: str = "X-Ping-Token"
