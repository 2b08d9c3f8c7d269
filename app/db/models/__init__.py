"""Every ORM model, imported here so Alembic and the app see one metadata.

One module per domain; add a new module's import below when you add tables.
"""

from app.db.base import Base
from app.db.models.auth import RevokedToken, User
from app.db.models.components import Component, ComponentState, HealthStatus
from app.db.models.healing import (
    AttemptState,
    HealingAttempt,
    HealingBudget,
    HealingIncident,
    HealingStrategyStat,
)
from app.db.models.monitoring import CheckResultRecord, CheckRollup, HealthTransitionRecord, HeartbeatPing, Incident

__all__ = [
    "AttemptState", "Base", "CheckResultRecord", "CheckRollup", "Component", "ComponentState", "HealingAttempt",
    "HealingBudget", "HealingIncident", "HealingStrategyStat", "HealthStatus", "HealthTransitionRecord",
    "HeartbeatPing", "Incident", "RevokedToken", "User",
]
