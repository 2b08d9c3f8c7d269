"""create_app(settings) -> FastAPI: routers, middleware, handlers. No I/O happens here."""

from __future__ import annotations

from fastapi import FastAPI

from app import __version__
from app.api.error_handlers import install_error_handlers
from app.api.openapi import install_openapi
from app.api.ratelimit import RateLimiter
from app.auth.throttle import login_failure_limit
from app.config.loading import load_settings
from app.config.settings import Settings
from app.observability.http_metrics import HttpMetrics, HttpMetricsRecorder
from app.observability.metrics import GuardMetrics
from app.platform.lifespan import ServiceBuilder, make_lifespan
from app.platform.runtime import Runtime

MAX_BODY_BYTES = 16 * 1024 * 1024

DESCRIPTION = """
Self-healing guard for ML and data pipelines: watches components (probes, heartbeats, pushed metrics),
decides health with hysteresis, detects anomalies, raises deduplicated alerts and heals with bounded,
audited recovery actions.

Authenticate with **Authorize** (username and password); every error uses the envelope
`{"error": {"type", "message", "details", "timestamp"}}`.
"""


def create_app(settings: Settings | None = None, *, build_services: ServiceBuilder | None = None) -> FastAPI:
    """``build_services(runtime)``: the loops to start, chosen from the composed runtime (tests run only
    some, e.g. ``lambda rt: []``); by default every one of them."""
    settings = settings or load_settings()
    metrics = GuardMetrics()
    limiter = RateLimiter(
        settings.security.rate_limiting,
        settings.security.trusted_proxies,
        metrics=metrics,
        login_limit=login_failure_limit(settings.security),
    )
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
    # The edge (request id, HTTP metrics, NUL and body-size guards, rate limits) wraps the audit log
    # (it sees the route template and the caller; refused and rate-limited floods never reach it).
    from app.api.edge import EdgeMiddleware
    from app.audit.middleware import AuditMiddleware
    from app.health.liveness import HEALTH_PATH, LivenessShortcut

    app.add_middleware(AuditMiddleware, state_getter=lambda: state)
    app.add_middleware(
        EdgeMiddleware,
        limiter_getter=lambda: state.limiter,
        max_body_bytes=MAX_BODY_BYTES,
        shortcuts={HEALTH_PATH: LivenessShortcut(state)},
        on_reject=lambda group: metrics.rate_limited.labels(group).inc(),
        metrics=HttpMetricsRecorder(
            HttpMetrics(metrics.registry), routes=lambda: app.routes, excluded=["/metrics", "/static/.*"]
        ),
    )

    from app.api.routes import include_routers

    include_routers(app)
    _mount_docs(app, settings)
    install_openapi(app)
    return app


def _mount_docs(app: FastAPI, settings: Settings) -> None:
    from app.api.docs import mount_docs

    mount_docs(app, enabled=settings.security.docs_enabled)
