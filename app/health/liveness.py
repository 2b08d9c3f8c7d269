"""The /health body, and the edge's shortcut that answers a plain ``GET /health`` with it.

A liveness probe (Kubernetes, every load balancer) calls /health all day. Routed through FastAPI it
pays the route table's matching, the request object, dependency resolution and the response model's
validation and serialisation: more than the body costs. The shortcut answers ``GET /health`` with
no query string from the edge middleware, after the edge has done its part (request id, NUL and size
guards, the per-IP rate limit, and the HTTP metrics, counted under the ``/health`` handler as
before). Any other request to /health (``?full=true``, another method, a root path) goes through the
route, which builds the same body from the same function and documents it in the OpenAPI schema.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from starlette.types import Scope, Send

from app.health.health_map import most_severe

if TYPE_CHECKING:
    from app.platform.runtime import Runtime

HEALTH_PATH = "/health"
HEALTH_LISTED = 5  # components named in a default /health body; ?full=true names every one


def liveness(state: Runtime, full: bool = False) -> dict[str, Any]:
    """The /health body: the overall status, and the few worst components that are neither healthy
    nor unknown plus how many more are not (every component's status with ``full``)."""
    if full:
        listed, unlisted = state.health_snapshot(True), 0
    else:
        listed, unlisted = most_severe(state.component_health, state.critical_components, HEALTH_LISTED)
    return {
        "status": state.overall_health(),
        "timestamp": datetime.now(UTC),
        "components": listed,
        "unlisted": unlisted,
    }


class LivenessShortcut:
    """Answers a plain ``GET /health`` as the route would (same body, status and headers; the
    timestamp in the same ISO 8601 form, UTC as ``Z``)."""

    handler = HEALTH_PATH  # the route template the HTTP metrics count it under

    def __init__(self, state: Runtime):
        self.state = state

    def accepts(self, scope: Scope) -> bool:
        """``scope["path"]`` is already known to be /health."""
        return scope["method"] == "GET" and not scope.get("query_string") and not scope.get("root_path")

    async def answer(self, send: Send) -> None:
        body = orjson.dumps(liveness(self.state), option=orjson.OPT_UTC_Z)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(body)).encode()),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
