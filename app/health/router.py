"""/health (liveness, never touches the database), /ready (readiness), /metrics (Prometheus)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from app.api.deps import RuntimeDep, runtime_of
from app.core.errors import envelope, error_responses
from app.health.liveness import HEALTH_LISTED, liveness

router = APIRouter(tags=["health"])


class HealthResponse(BaseModel):
    status: str
    timestamp: datetime
    components: dict[str, str] = Field(
        description=f"by default the {HEALTH_LISTED} worst components that are "
        "neither healthy nor unknown (critical ones first); with ?full=true all"
    )
    unlisted: int = Field(
        0, description="components neither healthy nor unknown that the default body leaves out"
    )


class ReadyResponse(BaseModel):
    status: str
    checks: dict[str, Any]


_FULL_HELP = "list every component's status; by default only those neither healthy nor unknown"
# ``full`` is read from the query string by hand rather than declared as a parameter: FastAPI's
# parameter resolution was a tenth of the cost of a /health request, which a liveness probe and
# every load balancer call all day. It is documented and validated exactly as a declared one.
_FULL_PARAMETER = {
    "name": "full",
    "in": "query",
    "required": False,
    "description": _FULL_HELP,
    "schema": {"type": "boolean", "description": _FULL_HELP, "default": False, "title": "Full"},
}
_as_bool = TypeAdapter(bool)


def _full(request: Request) -> bool:
    if not request.scope.get("query_string"):
        return False
    raw = request.query_params.get("full")
    if raw is None:
        return False
    try:
        return _as_bool.validate_python(raw)
    except ValidationError as exc:
        raise RequestValidationError([{**err, "loc": ("query", "full")} for err in exc.errors()]) from None


@router.get(
    "/health",
    response_model=HealthResponse,
    responses=error_responses(422, 429),
    openapi_extra={"parameters": [_FULL_PARAMETER]},
)
async def health(request: Request) -> HealthResponse:
    """Liveness: the process is serving. Stays 200 while the database is down, so that an outage
    does not make Kubernetes restart every replica at once. The body stays small at any fleet size:
    the overall status, the few worst components that are not healthy and how many more are not
    (``?full=true`` lists every component; /api/v1/status pages them)."""
    # A plain GET /health never gets here: the edge answers it with the same body
    # (app/health/liveness.py). This route answers the rest and documents the endpoint.
    return HealthResponse(**liveness(runtime_of(request), _full(request)))


@router.get("/ready", response_model=ReadyResponse, responses=error_responses(429, 503))
async def ready(rt: RuntimeDep) -> Any:
    """Readiness: database reachable, schema at head, background services running."""
    checks = await rt.readiness()
    if all(item["ok"] for item in checks.values()):
        return ReadyResponse(status="ready", checks=checks)
    failing = sorted(name for name, item in checks.items() if not item["ok"])
    return JSONResponse(
        envelope("service_unavailable", f"not ready: {', '.join(failing)}", {"checks": checks}),
        status_code=503,
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}, **error_responses(429)},
)
async def metrics(rt: RuntimeDep) -> Response:
    """Prometheus exposition: HTTP metrics and the guard's own."""
    from app.monitoring.presentation import publish_new_components

    await publish_new_components(rt.sessionmaker, rt.metrics)
    return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)
