"""Every ORM model, imported here so Alembic and the app see one metadata.

One module per domain; add a new module's import below when you add tables.
"""

from app.db.base import Base
from app.db.models.auth import RevokedToken, User
from app.db.models.components import Component, ComponentState, HealthStatus
from app.db.models.metrics import (
    DetectionRule,
    MetricAnomaly,
    MetricPoint,
    MetricRollup,
    MetricSeries,
    RuleState,
    metric_points,
)

__all__ = [
    "Base", "Component", "ComponentState", "DetectionRule", "HealthStatus", "MetricAnomaly", "MetricPoint",
    "MetricRollup", "MetricSeries", "RevokedToken", "RuleState", "User", "metric_points",
]
