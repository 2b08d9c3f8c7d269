"""API shapes for /api/v1/healing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TriggerRequest(BaseModel):
    strategy: str | None = Field(
        None, description="a strategy kind (or '<index>:<kind>') from the component's policy"
    )
    reason: str | None = Field(None, max_length=500)


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    incident_id: int | None
    attempt_number: int
    component: str
    strategy: str
    strategy_index: int
    state: str
    trigger: str
    requested_by: str | None
    description: str
    decision: dict[str, Any]
    detail: str | None
    output: str | None
    created_at: datetime
    started_at: datetime | None
    action_finished_at: datetime | None
    finished_at: datetime | None
    verify_deadline: datetime | None
    approval_deadline: datetime | None
    decided_by: str | None
    time_to_recover_s: float | None


class AttemptPage(BaseModel):
    items: list[AttemptOut]
    total: int
    limit: int
    offset: int


class StrategyStats(BaseModel):
    strategy: str
    attempts: int
    succeeded: int
    failed: int
    success_rate: float | None
    mean_time_to_recover_s: float | None


class HealingStats(BaseModel):
    enabled: bool
    total_attempts: int
    by_state: dict[str, int]
    success_rate: float | None
    mean_time_to_recover_s: float | None
    in_progress: int
    pending_approval: int
    breakers_open: list[str]
    per_strategy: list[StrategyStats]


class BreakerOut(BaseModel):
    component: str
    was_open: bool
    breaker_open: bool
