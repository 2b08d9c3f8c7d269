"""Roles and the seed's permissions. The single source of truth for who may do what."""

from __future__ import annotations

from enum import StrEnum


class Permission(StrEnum):
    READ_METRICS = "read_metrics"
    WRITE_METRICS = "write_metrics"
    MONITOR_HEALTH = "monitor_health"
    TRIGGER_HEALING = "trigger_healing"
    MANAGE_COMPONENTS = "manage_components"
    ADMIN_ACCESS = "admin_access"


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"
    # For pipelines and batch jobs: push metrics and heartbeats, read nothing else.
    INGEST = "ingest"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.READ_METRICS, Permission.MONITOR_HEALTH}),
    Role.OPERATOR: frozenset(
        {
            Permission.READ_METRICS,
            Permission.MONITOR_HEALTH,
            Permission.TRIGGER_HEALING,
            Permission.WRITE_METRICS,
        }
    ),
    Role.ADMIN: frozenset(Permission),
    Role.INGEST: frozenset({Permission.WRITE_METRICS}),
}


def permissions_for(role: str) -> frozenset[Permission]:
    try:
        return ROLE_PERMISSIONS[Role(role)]
    except ValueError:
        return frozenset()
