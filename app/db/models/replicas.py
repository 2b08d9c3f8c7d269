"""Replicas (running guard processes) and their time-bounded leases on components.

All times in these tables come from the database clock (`now()`), never from a process: two
replicas compare them, and their clocks may disagree.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base
from app.db.types import UTCDateTime


class Replica(Base):
    __tablename__ = "replicas"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    region: Mapped[str | None] = mapped_column(String(64), nullable=True)
    version: Mapped[str] = mapped_column(String(32), nullable=False)
    host: Mapped[str] = mapped_column(String(255), nullable=False)
    pid: Mapped[int] = mapped_column(Integer, nullable=False)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, server_default=func.now())
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, server_default=func.now())
    # active | draining | gone
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")

    __table_args__ = (Index("ix_replicas_status_heartbeat", "status", "heartbeat_at"),)


class ComponentLease(Base):
    __tablename__ = "component_leases"

    component_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("components.id", ondelete="CASCADE"), primary_key=True
    )
    replica_id: Mapped[str] = mapped_column(String(128), nullable=False)
    # The fencing token: incremented each time the lease passes to another replica.
    epoch: Mapped[int] = mapped_column(BigInteger, nullable=False, default=1)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, server_default=func.now())
    # Written by a replica handing the lease over (database clock): when the component's next check is
    # due, so the next holder probes it then instead of at a random offset. Only meaningful right after
    # a hand-over; an older value is in the past (= overdue: probe at once).
    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (Index("ix_component_leases_replica", "replica_id"),)
