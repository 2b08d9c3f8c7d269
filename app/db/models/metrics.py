"""Metric points, rollups, the series registry, detection rules and their state, anomalies.

``metric_points`` has no id: it is append-only, written by COPY, read by (component, metric, time)
and deleted by time, so a primary key index would only slow ingest down. The mapper is told which
columns identify a row so the ORM can still read it; retention deletes by physical row id
(ctid / rowid) behind the dialect seam.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base
from app.db.types import BlobType, JSONType, UTCDateTime, utcnow

metric_points = Table(
    "metric_points",
    Base.metadata,
    Column("component", String(128), nullable=False),
    Column("metric_name", String(200), nullable=False),
    # Canonical labels (sorted-key JSON, "" when none): one cheap text to tell series apart.
    Column("series_key", Text, nullable=False),
    Column("labels", JSONType, nullable=False),
    Column("value", Double, nullable=False),
    Column("ts", UTCDateTime, nullable=False),
    Index("ix_metric_points_series_ts", "component", "metric_name", "ts"),
    # BRIN on Postgres (tiny, nearly free to maintain on append-only data); a B-tree on SQLite.
    Index("ix_metric_points_ts", "ts", postgresql_using="brin"),
)


class MetricPoint(Base):
    __table__ = metric_points
    __mapper_args__ = {
        "primary_key": [
            metric_points.c.component,
            metric_points.c.metric_name,  # noqa: RUF012
            metric_points.c.series_key,
            metric_points.c.ts,
        ]
    }


class MetricRollup(Base):
    """Aggregate of one series over one bucket (``resolution`` seconds: 60 or 3600).

    Ingest appends one *delta* row per (series, bucket) touched by a batch, inside the batch's
    transaction (no read-modify-write, so concurrent batches never conflict); the compaction loop
    later merges a bucket's deltas into one row. Readers merge whatever rows they find.
    """

    __tablename__ = "metric_rollups"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    resolution: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    component: Mapped[str] = mapped_column(String(128), nullable=False)
    metric_name: Mapped[str] = mapped_column(String(200), nullable=False)
    series_key: Mapped[str] = mapped_column(Text, nullable=False)
    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    count: Mapped[int] = mapped_column(BigInteger, nullable=False)
    sum: Mapped[float] = mapped_column(Double, nullable=False)
    min: Mapped[float] = mapped_column(Double, nullable=False)
    max: Mapped[float] = mapped_column(Double, nullable=False)
    sumsq: Mapped[float] = mapped_column(Double, nullable=False)
    sketch: Mapped[bytes] = mapped_column(BlobType, nullable=False)
    compacted: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)

    __table_args__ = (
        # series_key last: a range of buckets of every series of a metric is still one index range,
        # and a bucket of one series (compaction's lookup, a labelled summary) is found in the index
        # instead of fetching the rows of every other series of that metric from the heap.
        Index(
            "ix_metric_rollups_series_bucket",
            "component",
            "metric_name",
            "resolution",
            "bucket_start",
            "series_key",
        ),
        Index("ix_metric_rollups_bucket_start", "bucket_start"),
        # The compactor's queue: deltas not merged yet (a partial index stays as small as the backlog).
        Index(
            "ix_metric_rollups_pending",
            "id",
            postgresql_where=text("NOT compacted"),
            sqlite_where=text("NOT compacted"),
        ),
    )


class MetricSeries(Base):
    """One row per series ever seen: its latest point (``/latest``) and when it was first seen.

    Unknown components ("accepted, and listed") are the components here with no registry entry.
    """

    __tablename__ = "metric_series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    component: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    metric_name: Mapped[str] = mapped_column(String(200), nullable=False)
    series_key: Mapped[str] = mapped_column(Text, nullable=False)
    labels: Mapped[dict[str, str]] = mapped_column(JSONType, nullable=False, default=dict)
    last_value: Mapped[float] = mapped_column(Double, nullable=False)
    last_ts: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    __table_args__ = (
        UniqueConstraint("component", "metric_name", "series_key", name="uq_metric_series_key"),
    )


class DetectionRule(Base):
    __tablename__ = "detection_rules"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False, unique=True)
    component: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    metric_name: Mapped[str] = mapped_column(String(200), nullable=False)
    # Subset matcher: a series matches when it carries every one of these labels.
    labels: Mapped[dict[str, str]] = mapped_column(JSONType, nullable=False, default=dict)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # threshold | anomaly | trend | absent
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    severity: Mapped[str] = mapped_column(String(16), nullable=False, default="warning")
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    # When it fires, the component's recovery policy acts on it like on a failed check (rule_healing.py).
    heal: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)
    # "config": declared in the config file's ``rules:`` (the API refuses to change it), else "api".
    source: Mapped[str] = mapped_column(String(16), nullable=False, default="api", server_default="api")


class RuleState(Base):
    """Evaluator state of one rule on one series: detector/baseline snapshot and whether it fires."""

    __tablename__ = "rule_states"

    rule_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("detection_rules.id", ondelete="CASCADE"), primary_key=True
    )
    series_key: Mapped[str] = mapped_column(Text, primary_key=True)
    labels: Mapped[dict[str, str]] = mapped_column(JSONType, nullable=False, default=dict)
    rule_version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    state: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    firing: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    anomaly_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_ts: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)


class MetricAnomaly(Base):
    """One firing episode of a rule on a series, with its evidence; ``cleared_at`` when it stopped."""

    __tablename__ = "metric_anomalies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("detection_rules.id", ondelete="SET NULL"), nullable=True, index=True
    )
    component: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    metric_name: Mapped[str] = mapped_column(String(200), nullable=False)
    series_key: Mapped[str] = mapped_column(Text, nullable=False)
    labels: Mapped[dict[str, str]] = mapped_column(JSONType, nullable=False, default=dict)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    severity: Mapped[str] = mapped_column(String(16), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # A rule with ``heal: true``: the incident its firing opened (closed when the rule resolves).
    incident_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
