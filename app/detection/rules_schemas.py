"""/api/v1/rules request and response shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

RuleKind = Literal["threshold", "anomaly", "trend", "absent"]
Severity = Literal["info", "warning", "critical"]
Operator = Literal["gt", "ge", "lt", "le", "eq", "ne"]


class RuleParams(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # 0 is not false, false is not a number

    operator: Operator | None = Field(default=None, description="threshold: comparison with `value`")
    value: float | None = Field(
        default=None, description="threshold: the bound; trend: the level whose crossing is predicted"
    )
    for_seconds: float = Field(
        default=0.0,
        ge=0,
        le=7 * 86400,
        description="threshold: must hold this long; absent: "
        "fire when no point arrived for this long (also written `for: 10m`)",
    )
    sensitivity: float = Field(
        default=0.5, gt=0, le=1, description="anomaly: score at or above which it fires"
    )
    clear_points: int = Field(
        default=10, ge=1, le=10_000, description="anomaly: calm points before it clears"
    )
    horizon_seconds: float = Field(
        default=7200.0, gt=0, le=90 * 86400, description="trend: fire when the crossing is nearer"
    )
    window_seconds: float = Field(
        default=3600.0, gt=0, le=30 * 86400, description="trend: least-squares window"
    )

    @model_validator(mode="before")
    @classmethod
    def _for_alias(cls, data: Any) -> Any:
        # People write ``for: 10m`` (Prometheus' word); ``for_seconds`` is the stored spelling.
        if isinstance(data, dict) and "for" in data:
            from app.config.sections import parse_duration

            data = dict(data)
            if "for_seconds" in data:
                raise ValueError("give either for or for_seconds, not both")
            data["for_seconds"] = parse_duration(data.pop("for"))
        return data


class RuleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # 0 is not false, false is not a number

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
    component: str = Field(min_length=1, max_length=128)
    metric_name: str = Field(min_length=1, max_length=200, pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
    labels: dict[str, str] = Field(default_factory=dict, max_length=32)
    kind: RuleKind
    params: RuleParams = Field(default_factory=RuleParams)
    severity: Severity = "warning"
    enabled: bool = True
    heal: bool = Field(
        False,
        description="when it fires, the component's recovery policy acts on it like on a "
        "failed check (a critical incident); the incident closes when it resolves",
    )


class RuleUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # 0 is not false, false is not a number

    labels: dict[str, str] | None = Field(None, max_length=32)
    params: RuleParams | None = None
    severity: Severity | None = None
    enabled: bool | None = None
    heal: bool | None = None


class RuleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    component: str
    metric_name: str
    labels: dict[str, str]
    kind: str
    params: dict[str, Any]
    severity: str
    enabled: bool
    heal: bool = False
    version: int
    source: str = "api"
    created_at: datetime
    updated_at: datetime


class AnomalyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    rule_id: int | None
    component: str
    metric_name: str
    labels: dict[str, str]
    kind: str
    severity: str
    message: str
    evidence: dict[str, Any]
    started_at: datetime
    cleared_at: datetime | None
