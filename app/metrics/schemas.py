"""Response shapes of /api/v1/metrics (ingest bodies are parsed by ``validation``, not pydantic)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

LabelKey = Annotated[str, StringConstraints(max_length=128, pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")]
LabelValue = Annotated[str, StringConstraints(max_length=256, pattern=r"^[^\x00]*$")]


class PointIn(BaseModel):
    """Documentation only: the body is parsed and checked by ``app.metrics.validation`` (the same
    constraints, said here so clients know them)."""

    model_config = ConfigDict(extra="forbid")

    component: str = Field(
        examples=["etl-worker"], min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"
    )
    metric_name: str = Field(
        examples=["queue_depth"], min_length=1, max_length=200, pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
    )
    value: float = Field(ge=-1e150, le=1e150, description="a finite number within ±1e150")
    labels: dict[LabelKey, LabelValue] | None = Field(default=None, max_length=32)
    timestamp: datetime | float | None = Field(
        None,
        description=(
            "ISO 8601 or epoch seconds, within the last 366 days and at most 5 minutes ahead; default now"
        ),
    )


def ingest_body(*, batch: bool) -> dict[str, Any]:
    """``openapi_extra`` for the ingest routes, which read their body themselves: documented, required."""
    point = PointIn.model_json_schema()
    # Label names: say the pattern for every key (pydantic only lists it under patternProperties).
    point["properties"]["labels"] = {
        "anyOf": [
            {
                "type": "object",
                "maxProperties": 32,
                "additionalProperties": {"type": "string", "maxLength": 256, "pattern": "^[^\\x00]*$"},
                "propertyNames": {"maxLength": 128, "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"},
            },
            {"type": "null"},
        ]
    }
    if batch:
        points = {"type": "array", "items": point, "minItems": 1, "maxItems": 10_000}
        schema = {
            "anyOf": [
                {
                    "type": "object",
                    "properties": {"points": points},
                    "required": ["points"],
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "properties": {"series": _series_schema(point)},
                    "required": ["series"],
                    "additionalProperties": False,
                    "description": (
                        "The series shape: each series' identity once, its points as two arrays of "
                        "equal length. The same limits as points (at most 10,000 points in all)."
                    ),
                },
                points,
            ]
        }
    else:
        schema = point
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _series_schema(point: dict[str, Any]) -> dict[str, Any]:
    """One series of the series shape: the point's component, metric_name and labels, and its points
    as ``timestamps`` and ``values`` (equal lengths; a timestamp as a point's, but required)."""
    props = point["properties"]
    timestamp = {
        "anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}],
        "description": props["timestamp"]["description"].replace("; default now", ""),
    }
    return {
        "type": "array",
        "minItems": 1,
        "maxItems": 10_000,
        "items": {
            "type": "object",
            "properties": {
                "component": props["component"],
                "metric_name": props["metric_name"],
                "labels": props["labels"],
                "timestamps": {"type": "array", "items": timestamp, "minItems": 1, "maxItems": 10_000},
                "values": {"type": "array", "items": props["value"], "minItems": 1, "maxItems": 10_000},
            },
            "required": ["component", "metric_name", "timestamps", "values"],
            "additionalProperties": False,
        },
    }


class IngestResult(BaseModel):
    accepted: int


class PointOut(BaseModel):
    component: str
    metric_name: str
    labels: dict[str, str]
    value: float
    timestamp: datetime


class PointPage(BaseModel):
    items: list[PointOut]
    limit: int
    offset: int


class Summary(BaseModel):
    component: str
    metric_name: str
    labels: dict[str, str]
    start: datetime
    end: datetime
    count: int
    sum: float
    mean: float | None
    min: float | None
    max: float | None
    stddev: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    exact: bool = Field(description="true when computed from raw points; else quantiles are within 0.5%")


class UnknownComponent(BaseModel):
    component: str
    first_seen: datetime
    last_seen: datetime
    series: int


class Baseline(BaseModel):
    rule_id: int
    rule_name: str
    component: str
    metric_name: str
    labels: dict[str, str]
    firing: bool
    last_ts: datetime | None
    baseline: dict[str, Any]
