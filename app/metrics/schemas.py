"""Response shapes of /api/v1/metrics (ingest bodies are parsed by ``validation``, not pydantic)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class PointIn(BaseModel):
    """Documentation only: the body is parsed and checked by ``app.metrics.validation``."""

    component: str = Field(examples=["etl-worker"])
    metric_name: str = Field(examples=["queue_depth"])
    value: float
    labels: dict[str, str] = Field(default_factory=dict)
    timestamp: datetime | float | None = Field(None, description="ISO 8601 or epoch seconds; default now")


class BatchIn(BaseModel):
    points: list[PointIn] = Field(max_length=10_000)


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
