"""/health (liveness, never touches the database), /ready (readiness), /metrics (Prometheus)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from app.api.deps import RuntimeDep
from app.core.errors import envelope, error_responses

router = APIRouter(tags=["health"])


class HealthResponse(BaseModel):
    status: str
    timestamp: datetime
    components: dict[str, str]


class ReadyResponse(BaseModel):
    status: str
    checks: dict[str, Any]


@router.get("/health", response_model=HealthResponse, responses=error_responses(429))
async def health(rt: RuntimeDep, full: Annotated[bool, Query(
        description="list every component's status; by default only those neither healthy nor unknown")] = False,
) -> HealthResponse:
    """Liveness: the process is serving. Stays 200 while the database is down, so that an outage
    does not make Kubernetes restart every replica at once. The body stays small at any fleet size:
    the overall status and the components that are not healthy (``?full=true`` for all of them)."""
    return HealthResponse(status=rt.overall_health(), timestamp=datetime.now(UTC),
                          components=rt.health_snapshot(full))


@router.get("/ready", response_model=ReadyResponse, responses=error_responses(429, 503))
async def ready(rt: RuntimeDep) -> Any:
    """Readiness: database reachable, schema at head, background services running."""
    checks = await rt.readiness()
    if all(item["ok"] for item in checks.values()):
        return ReadyResponse(status="ready", checks=checks)
    failing = sorted(name for name, item in checks.items() if not item["ok"])
    return JSONResponse(envelope("service_unavailable", f"not ready: {', '.join(failing)}", {"checks": checks}),
                          status_code=503)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}, **error_responses(429)})
async def metrics(rt: RuntimeDep) -> Response:
    """Prometheus exposition: HTTP metrics and the guard's own."""
    from app.monitoring.presentation import publish_new_components

    await publish_new_components(rt.sessionmaker, rt.metrics)
    return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)
