"""Every router of the service, in one list. Add a domain's router here."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from fastapi import FastAPI

if TYPE_CHECKING:
    from fastapi.dependencies.models import Dependant
    from fastapi.routing import APIRoute
    from starlette.routing import BaseRoute

# Routes that answer without a token (everything else must declare a permission; a test enforces it).
PUBLIC_PATHS = {
    "/health",
    "/ready",
    "/metrics",
    "/api/v1/auth/token",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    # Authenticated by its own bearer token (security.alertmanager_token), not by a user permission.
    "/api/v1/integrations/alertmanager",
    # The HTML status page checks access itself: public, or monitor_health when
    # security.status_page_public is false (see app/statuspage/router.py).
    "/status",
    # Batch-job ping URLs: the token in the path is the credential (app/monitoring/ping_router.py).
    "/ping/{token}",
    "/ping/{token}/start",
    "/ping/{token}/fail",
    "/ping/{token}/{exit_code}",
}
# Routes that need a valid login but no particular permission.
AUTHENTICATED_PATHS = {"/api/v1/auth/logout", "/api/v1/auth/me"}


def include_routers(app: FastAPI) -> None:
    from app.alerts.router import router as alerts_router
    from app.alerts.router import silences_router
    from app.audit.router import router as audit_router
    from app.auth.router import router as auth_router
    from app.auth.router import users_router
    from app.components.router import router as components_router
    from app.detection.rules_router import router as rules_router
    from app.healing.router import router as healing_router
    from app.health.router import router as health_router
    from app.integrations.alertmanager_router import router as alertmanager_router
    from app.metrics.router import router as metrics_router
    from app.monitoring.heartbeat_router import router as heartbeat_router
    from app.monitoring.ping_router import router as ping_router
    from app.monitoring.router import router as status_router
    from app.notify.router import notifications_router
    from app.notify.router import router as channels_router
    from app.security.router import router as security_router
    from app.statuspage.router import router as status_page_router

    for router in (
        health_router,
        auth_router,
        users_router,
        components_router,
        status_router,
        heartbeat_router,
        ping_router,
        healing_router,
    ):
        app.include_router(router)
    for router in (
        metrics_router,
        rules_router,
        alerts_router,
        silences_router,
        channels_router,
        notifications_router,
        alertmanager_router,
        audit_router,
        security_router,
        status_page_router,
    ):
        app.include_router(router)
    from app.replicas.router import router as replicas_router

    app.include_router(replicas_router)
    from app.alerts.maintenance_router import router as maintenance_router

    app.include_router(maintenance_router)


def iter_api_routes(app: FastAPI) -> Iterator[APIRoute]:
    """Every APIRoute of the app, through included routers (prefixes are set on the routers)."""
    from fastapi.routing import APIRoute

    def walk(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
        for route in routes:
            if isinstance(route, APIRoute):
                yield route
            elif hasattr(route, "original_router"):
                yield from walk(route.original_router.routes)
            elif hasattr(route, "routes"):
                yield from walk(route.routes)

    yield from walk(app.routes)


def route_permission(route: APIRoute) -> object | None:
    """The permission a route's dependencies require (None when it declares none).

    A frozenset means the route accepts any one of those permissions.
    """

    def walk(dependant: Dependant) -> object | None:
        for dep in dependant.dependencies:
            permission: object | None = getattr(dep.call, "__permission__", None)
            if permission is not None:
                return permission
            found = walk(dep)
            if found is not None:
                return found
        return None

    return walk(route.dependant)
