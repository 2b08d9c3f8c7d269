"""Alerts (fingerprinted, deduplicated conditions), their history, and silences."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, Double, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base
from app.db.types import JSONType, UTCDateTime, utcnow


class AlertStatus(StrEnum):
    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"
    SILENCED = "silenced"
    RESOLVED = "resolved"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}
_ACTIVE = text("status <> 'resolved'")


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        # One active alert per condition: dedup holds even between replicas racing on the same fingerprint.
        Index(
            "uq_alerts_active_fingerprint",
            "fingerprint",
            unique=True,
            sqlite_where=_ACTIVE,
            postgresql_where=_ACTIVE,
        ),
        Index("ix_alerts_status_severity", "status", "severity"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(200), nullable=False)
    component: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    # Nullable: Alertmanager may report components the registry does not know.
    component_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("components.id", ondelete="SET NULL"), nullable=True
    )
    severity: Mapped[str] = mapped_column(String(16), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    source: Mapped[str] = mapped_column(String(32), nullable=False, default="api")
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=AlertStatus.FIRING)
    labels: Mapped[dict[str, str]] = mapped_column(JSONType, nullable=False, default=dict)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, nullable=False, default=dict)
    # The monitoring branch owns the incidents table: a plain integer, no foreign key on purpose.
    incident_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    count: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    last_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    escalation_level: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    acknowledged_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    acknowledged_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resolved: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    resolution_action: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)


class AlertEvent(Base):
    """One step of an alert's history (raised, repeated with a new notification, acked, resolved...)."""

    __tablename__ = "alert_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False, index=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    actor: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)


class Silence(Base):
    """A maintenance window: mutes notifications and pauses healing for what it matches."""

    __tablename__ = "silences"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Component name or shell-style pattern ("etl-*"); None matches every component.
    component: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # Every label listed must be equal (alert labels and the component's labels are both seen).
    labels: Mapped[dict[str, str]] = mapped_column(JSONType, nullable=False, default=dict)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    created_by: Mapped[str] = mapped_column(String(64), nullable=False)
    comment: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    # A recurring maintenance window: open for ``duration_seconds`` from each time the cron
    # ``schedule`` matches (in ``tz``), between starts_at and ends_at. Without a schedule the
    # silence is open for the whole of [starts_at, ends_at).
    schedule: Mapped[str | None] = mapped_column(String(200), nullable=True)
    tz: Mapped[str | None] = mapped_column(String(64), nullable=True)
    duration_seconds: Mapped[float | None] = mapped_column(Double, nullable=True)
    # Windows declared in the config file are found again by name; "api", "config" or "component"
    # (opened by a pipeline for its own component, e.g. the SDK's maintenance()).
    name: Mapped[str | None] = mapped_column(String(128), nullable=True, unique=True)
    source: Mapped[str] = mapped_column(String(16), nullable=False, default="api", server_default="api")
