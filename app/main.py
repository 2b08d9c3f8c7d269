"""create_app(settings) -> FastAPI: routers, middleware, handlers. No I/O happens here."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from app import __version__
from app.auth.throttle import login_failure_limit
from app.config.settings import Settings, load_settings
from app.api.error_handlers import BodySizeLimitMiddleware, RejectNulMiddleware, install_error_handlers
from app.platform.lifespan import ServiceBuilder, make_lifespan
from app.platform.runtime import Runtime
from app.observability.http_metrics import HttpMetrics, HttpMetricsMiddleware
from app.observability.metrics import GuardMetrics
from app.api.openapi import install_openapi
from app.api.ratelimit import RateLimiter, RateLimitMiddleware

MAX_BODY_BYTES = 16 * 1024 * 1024

DESCRIPTION = """
Self-healing guard for ML and data pipelines: watches components (probes, heartbeats, pushed metrics),
decides health with hysteresis, detects anomalies, raises deduplicated alerts and heals with bounded,
audited recovery actions.

Authenticate with **Authorize** (username and password); every error uses the envelope
`{"error": {"type", "message", "details", "timestamp"}}`.
"""


def _request_ids() -> Iterator[str]:
    """Unique per process and unguessable across processes: a random prefix and a counter
    (uuid4 per request cost 4.5 % of a /health request)."""
    prefix = secrets.token_hex(8)
    for n in itertools.count():
        yield f"{prefix}{n:016x}"


_new_request_id = _request_ids().__next__


class RequestIdMiddleware:
    """Gives every request an id (or keeps a sane incoming one) and echoes it as X-Request-ID."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if incoming.isascii() and 0 < len(incoming) <= 64 and incoming.isprintable() else _new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [(b"x-request-id", request_id.encode())]
            await send(message)

        await self.app(scope, receive, send_with_id)


def create_app(settings: Settings | None = None, *, build_services: ServiceBuilder | None = None) -> FastAPI:
    """``build_services(runtime)``: the loops to start, chosen from the composed runtime (tests run only
    some, e.g. ``lambda rt: []``); by default every one of them."""
    settings = settings or load_settings()
    metrics = GuardMetrics()
    limiter = RateLimiter(settings.security.rate_limiting, settings.security.trusted_proxies, metrics=metrics,
                          login_limit=login_failure_limit(settings.security))
    state = Runtime(settings=settings, metrics=metrics, limiter=limiter)

    app = FastAPI(
        title="Pipeline Guard",
        version=__version__,
        description=DESCRIPTION,
        lifespan=make_lifespan(state, build_services),
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = state

    install_error_handlers(app)
    # Outermost last: request id wraps everything, then the body cap, then rate limits, then the audit
    # log (innermost: it sees the route template and the caller; rate-limited floods never reach it).
    from app.audit.middleware import AuditMiddleware

    app.add_middleware(AuditMiddleware, state_getter=lambda: state)
    app.add_middleware(RateLimitMiddleware, limiter_getter=lambda: state.limiter,
                       on_reject=lambda group: metrics.rate_limited.labels(group).inc())
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(RejectNulMiddleware)
    app.add_middleware(RequestIdMiddleware)

    from app.api.routes import include_routers

    include_routers(app)
    _mount_docs(app, settings)
    install_openapi(app)

    # Outermost of all: times the whole stack. The route template comes from the matched route.
    app.add_middleware(HttpMetricsMiddleware, metrics=HttpMetrics(metrics.registry), routes=lambda: app.routes,
                       excluded=["/metrics", "/static/.*"])
    return app


def _mount_docs(app: FastAPI, settings: Settings) -> None:
    from app.api.docs import mount_docs

    mount_docs(app, enabled=settings.security.docs_enabled)
