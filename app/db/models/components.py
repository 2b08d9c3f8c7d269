"""Components (what we guard) and their current health state."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db.base import Base
from app.db.types import JSONType, UTCDateTime, utcnow

# The components that list dependencies, written the same way in the partial index below and in the
# root-cause query (app/healing/rootcause.py) so both dialects answer that query from the index: most
# components depend on nothing, and /api/v1/status must not read the fleet to learn it.
HAS_DEPENDENCIES = "CAST(depends_on AS TEXT) NOT IN ('null', '[]')"


class HealthStatus(StrEnum):
    """The seed's health enum, plus ``unknown`` for a component not yet observed."""

    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    CRITICAL = "critical"
    RECOVERING = "recovering"
    FAILED = "failed"


class Component(Base):
    __tablename__ = "components"
    # Ids are never reused (SQLite would hand a deleted row's id to the next insert otherwise), so
    # an id held elsewhere (healing, alerts, a scheduler's memory) never points at a newer row.
    # The index covers the scheduler's per-second change check (`app/components/registry_watch.py`):
    # one aggregate over these columns is read from the index, not from every row.
    __table_args__ = (
        Index("ix_components_registry_watch", "id", "version", "updated_at", "enabled"),
        Index(
            "ix_components_dependencies",
            "id",
            postgresql_where=text(HAS_DEPENDENCIES),
            sqlite_where=text(HAS_DEPENDENCIES),
        ),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    endpoint: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    critical: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    labels: Mapped[dict[str, str]] = mapped_column(JSONType, nullable=False, default=dict)
    # Denormalised from labels["region"] so the list filter is an indexed equality on both dialects.
    region: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    check: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    recovery: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    # Names of the components this one needs (app/components/graph.py): its failures while one of
    # them is unhealthy are attributed to that root cause (app/healing/rootcause.py).
    depends_on: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list, server_default="[]")
    # "api" or "config": components declared in the YAML file may only be edited there.
    source: Mapped[str] = mapped_column(String(16), nullable=False, default="api")
    # Secret token a job uses to push heartbeats/metrics without a user JWT (hash only).
    ping_token_hash: Mapped[str | None] = mapped_column(String(128), nullable=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)

    state: Mapped[ComponentState | None] = relationship(
        back_populates="component",
        uselist=False,
        lazy="joined",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class ComponentState(Base):
    """The current health of one component (history lives in transitions)."""

    __tablename__ = "component_states"

    component_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("components.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=HealthStatus.UNKNOWN, index=True)
    status_since: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    last_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    last_detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    consecutive_successes: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # Monitoring's state machine, persisted so a restart resumes where it stopped:
    # the last outcomes for N-of-M flap detection ("u"p / "g" degraded / "d"own, oldest first),
    # the end of the grace period after a recovery action, and the open incident.
    recent_outcomes: Mapped[str] = mapped_column(String(64), nullable=False, default="", server_default="")
    grace_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    current_incident_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Heartbeat components: what the last pings said (evaluated by the scheduler).
    last_ping_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_ping_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    last_start_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)

    component: Mapped[Component] = relationship(back_populates="state")
