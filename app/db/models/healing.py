"""Self-healing: attempts (the claims), per-component budgets and breaker, incidents as healing sees
them, and per-(component, strategy) statistics for learned ordering.

No foreign keys to other domains' tables: ``incident_id`` and ``component_id`` are plain integers so
this branch's migration can be re-chained freely.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base
from app.db.types import JSONType, UTCDateTime, utcnow


class AttemptState(StrEnum):
    PENDING_APPROVAL = "pending_approval"
    RUNNING = "running"  # claimed; the side effect may be under way
    VERIFYING = "verifying"  # the action ran; waiting for the component to pass its checks
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # left running/verifying by a dead process
    # Ended without a verdict: its component was disabled or deleted while the action was verified
    # (no check could tell). Neither a success nor a failure of the strategy.
    CANCELLED = "cancelled"
    DRY_RUN = "dry_run"
    REJECTED = "rejected"
    EXPIRED = "expired"  # approval not given in time


IN_FLIGHT = (AttemptState.RUNNING, AttemptState.VERIFYING)
OPEN_STATES = (AttemptState.PENDING_APPROVAL, AttemptState.RUNNING, AttemptState.VERIFYING)


class HealingAttempt(Base):
    """One execution (or proposal) of a strategy for an incident. Inserting it is the claim."""

    __tablename__ = "healing_attempts"
    __table_args__ = (
        UniqueConstraint("incident_key", "attempt_number", name="uq_healing_attempts_incident_number"),
        # NULLs are distinct in unique constraints on both dialects: only in-flight rows hold a slot.
        UniqueConstraint("slot", name="uq_healing_attempts_slot"),
        UniqueConstraint("group_key", "group_slot", name="uq_healing_attempts_group_slot"),
        Index("ix_healing_attempts_state", "state"),
        Index("ix_healing_attempts_component_created", "component", "created_at"),
        # The relapse check (app/healing/incidents.py) reads a component's latest succeeded attempt.
        Index("ix_healing_attempts_component_state_finished", "component", "state", "finished_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    # "i:<incident_id>" or "m:<uuid>" for a manual trigger without an incident.
    incident_key: Mapped[str] = mapped_column(String(64), nullable=False)
    attempt_number: Mapped[int] = mapped_column(Integer, nullable=False)
    component: Mapped[str] = mapped_column(String(128), nullable=False)
    component_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    strategy: Mapped[str] = mapped_column(String(64), nullable=False)
    strategy_index: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    state: Mapped[str] = mapped_column(String(24), nullable=False)
    trigger: Mapped[str] = mapped_column(String(16), nullable=False, default="auto")  # auto | manual
    requested_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    decision: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    output: Mapped[str | None] = mapped_column(Text, nullable=True)
    slot: Mapped[int | None] = mapped_column(Integer, nullable=True)
    group_key: Mapped[str | None] = mapped_column(String(160), nullable=True)
    group_slot: Mapped[int | None] = mapped_column(Integer, nullable=True)
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # The owner's lease on a running attempt, renewed while its action runs (database clock); past it
    # the reconciler finishes, fails or retries the attempt, whoever owned it.
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Committed just before the side effect starts: an attempt interrupted without it never acted and
    # is retried; with it, it may have acted and is never re-run blindly.
    acting_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # A command action's process group and what identifies its leader ("<boot id>:<start time>"), so
    # a reconciler on the same machine can kill what a dead guard left running, and nothing else.
    pgid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    process_start: Mapped[str | None] = mapped_column(String(96), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    action_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    verify_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    approval_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # Seconds from the incident's start to verified health, when this attempt healed it.
    time_to_recover_s: Mapped[float | None] = mapped_column(Float, nullable=True)


class HealingIncident(Base):
    """An incident as healing tracks it (fed by IncidentOpened/IncidentClosed events)."""

    __tablename__ = "healing_incidents"

    incident_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    component: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    component_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    labels: Mapped[dict[str, str]] = mapped_column(JSONType, nullable=False, default=dict)
    status: Mapped[str] = mapped_column(
        String(16), nullable=False, default="open", index=True
    )  # open | closed
    # What healing concluded: None while trying, "healed", "exhausted", "dry_run", "rejected".
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class HealingBudget(Base):
    """Per-component budgets shared by every replica: back-off, cooldown and the circuit breaker."""

    __tablename__ = "healing_budgets"

    component: Mapped[str] = mapped_column(String(128), primary_key=True)
    backoff_level: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    backoff_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cooldown_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # ISO timestamps of incidents that healing gave up on, pruned to the breaker window.
    failed_incidents: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    breaker_open: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    breaker_opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    breaker_rearm_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)


class HealingStrategyStat(Base):
    """Observed outcomes per (component, strategy position) for learned ordering."""

    __tablename__ = "healing_strategy_stats"

    component: Mapped[str] = mapped_column(String(128), primary_key=True)
    strategy_key: Mapped[str] = mapped_column(String(96), primary_key=True)  # "<index>:<kind>"
    successes: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    total_recover_s: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)
