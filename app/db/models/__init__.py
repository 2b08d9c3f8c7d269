"""Every ORM model, imported here so Alembic and the app see one metadata.

One module per domain; add a new module's import below when you add tables.
"""

from app.db.base import Base
from app.db.models.alerts import Alert, AlertEvent, AlertStatus, Severity, Silence
from app.db.models.audit import AuditEntry
from app.db.models.auth import RevokedToken, User
from app.db.models.components import Component, ComponentState, HealthStatus
from app.db.models.healing import (
    AttemptState,
    HealingAttempt,
    HealingBudget,
    HealingIncident,
    HealingStrategyStat,
)
from app.db.models.metrics import (
    DetectionRule,
    MetricAnomaly,
    MetricPoint,
    MetricRollup,
    MetricSeries,
    RuleState,
    metric_points,
)
from app.db.models.monitoring import (
    CheckResultRecord,
    CheckRollup,
    HealthTransitionRecord,
    HeartbeatPing,
    Incident,
)
from app.db.models.notify import Channel, DeliveryAttempt, Notification, NotificationStatus
from app.db.models.replicas import ComponentLease, Replica

__all__ = [
    "Alert",
    "AlertEvent",
    "AlertStatus",
    "AttemptState",
    "AuditEntry",
    "Base",
    "Channel",
    "CheckResultRecord",
    "CheckRollup",
    "Component",
    "ComponentLease",
    "ComponentState",
    "DeliveryAttempt",
    "DetectionRule",
    "HealingAttempt",
    "HealingBudget",
    "HealingIncident",
    "HealingStrategyStat",
    "HealthStatus",
    "HealthTransitionRecord",
    "HeartbeatPing",
    "Incident",
    "MetricAnomaly",
    "MetricPoint",
    "MetricRollup",
    "MetricSeries",
    "Notification",
    "NotificationStatus",
    "Replica",
    "RevokedToken",
    "RuleState",
    "Severity",
    "Silence",
    "User",
    "metric_points",
]
