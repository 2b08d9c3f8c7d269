"""Monitoring: raw check results, health transitions, incidents, hourly rollups, heartbeat pings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base
from app.db.types import JSONType, UTCDateTime, utcnow


def _component_fk() -> ForeignKey:
    return ForeignKey("components.id", ondelete="CASCADE")


class CheckResultRecord(Base):
    """One observation (raw; kept for `results_retention`, then only the hourly rollup remains)."""

    __tablename__ = "check_results"
    __table_args__ = (
        Index("ix_check_results_component_observed", "component_id", "observed_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    component_id: Mapped[int] = mapped_column(Integer, _component_fk(), nullable=False)
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)  # up / degraded / down
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    detail: Mapped[str] = mapped_column(Text, nullable=False, default="")


class HealthTransitionRecord(Base):
    """A change of health status, with the reason and the results that caused it."""

    __tablename__ = "health_transitions"
    __table_args__ = (
        Index("ix_health_transitions_component_at", "component_id", "at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    component_id: Mapped[int] = mapped_column(Integer, _component_fk(), nullable=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    previous: Mapped[str] = mapped_column(String(16), nullable=False)
    current: Mapped[str] = mapped_column(String(16), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    # The check results behind the decision: ids (raw rows may be gone after retention) and a summary
    # ({"outcomes": "uddd", "last_detail": ...}) that survives them.
    result_ids: Mapped[list[int]] = mapped_column(JSONType, nullable=False, default=list)
    summary: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    incident_id: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Incident(Base):
    """One continuous episode of a component being unhealthy (alerts and healing hang off it)."""

    __tablename__ = "incidents"
    # Ids never reused: healing, alerts and transitions refer to incidents by id.
    __table_args__ = (
        Index("ix_incidents_component_opened", "component_id", "opened_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    component_id: Mapped[int] = mapped_column(Integer, _component_fk(), nullable=False)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    opening_status: Mapped[str] = mapped_column(String(16), nullable=False)
    worst_status: Mapped[str] = mapped_column(String(16), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    close_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Root cause (app/healing/rootcause.py): the upstream component this incident is attributed to.
    caused_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # While suppressed, no notification and no healing for this incident: it is attributed to an
    # upstream root, or held until ``held_until`` because its upstream is not yet known healthy.
    held_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    suppressed: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())


class CheckRollup(Base):
    """Per component and hour: how many checks, how many failed, latency summary."""

    __tablename__ = "check_rollups"

    component_id: Mapped[int] = mapped_column(Integer, _component_fk(), primary_key=True)
    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True, index=True)
    count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    degraded: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    latency_min_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    latency_mean_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    latency_max_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    latency_p95_ms: Mapped[float | None] = mapped_column(Float, nullable=True)


class HeartbeatPing(Base):
    """One ping pushed by a job (kept like raw results). ``rid``: the run it reports (a ping URL's
    ``?rid=``, a UUID): a finish is timed from its own run's ``start`` row (docs/LIFECYCLE.md rule 12),
    so a run's identity lives as long as its pings (``results_retention``)."""

    __tablename__ = "heartbeat_pings"
    __table_args__ = (
        Index("ix_heartbeat_pings_component_received", "component_id", "received_at"),
        Index("ix_heartbeat_pings_component_rid", "component_id", "rid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    component_id: Mapped[int] = mapped_column(Integer, _component_fk(), nullable=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow, index=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    source: Mapped[str] = mapped_column(String(16), nullable=False, default="token")  # token / jwt
    rid: Mapped[str | None] = mapped_column(String(36), nullable=True)
