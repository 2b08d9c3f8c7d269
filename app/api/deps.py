"""Request dependencies: the runtime and its typed parts, the session (transaction owner), the caller,
permissions. The only place (with middleware) that reads ``app.state.runtime``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.ratelimit import RateLimiter
from app.auth.permissions import Permission, Role
from app.auth.service import AuthService, Principal
from app.config.settings import Settings
from app.core.errors import Conflict, Forbidden, PipelineGuardError, ServiceUnavailable, Unauthorized
from app.detection.evaluator import RuleEvaluator  # noqa: F401 - resolves Detection's annotations
from app.healing.engine import HealingEngine
from app.healing.strategies.registry import StrategyRegistry
from app.monitoring.hearing import Receipt
from app.monitoring.scheduler import Scheduler
from app.observability.metrics import GuardMetrics
from app.platform.core import Core
from app.platform.events import EventBus
from app.platform.runtime import Detection, Runtime
from app.replicas.manager import LeaseManager
from app.security.crypto import SecretBox

TOKEN_URL = "/api/v1/auth/token"
oauth2_scheme = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)


def runtime_of(request: Request) -> Runtime:
    """The app's runtime, for the few hot routes that skip dependency resolution (``/health``)."""
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_runtime(request: Request) -> Runtime:
    # The getters are ``async def``: FastAPI calls them on the loop (a plain ``def`` hops to a thread).
    return runtime_of(request)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_settings(rt: RuntimeDep) -> Settings:
    return rt.settings


async def get_core(rt: RuntimeDep) -> Core:
    return rt.core


async def get_metrics(rt: RuntimeDep) -> GuardMetrics:
    return rt.metrics


async def get_events(rt: RuntimeDep) -> EventBus:
    return rt.events


async def get_secret_box(rt: RuntimeDep) -> SecretBox:
    if rt.secret_box is None:
        raise ServiceUnavailable("the guard is not started yet")
    return rt.secret_box


async def get_scheduler(rt: RuntimeDep) -> Scheduler:
    return rt.monitoring.scheduler


async def get_detection(rt: RuntimeDep) -> Detection:
    return rt.detection


async def get_strategies(rt: RuntimeDep) -> StrategyRegistry:
    return rt.healing.registry


async def get_healing_engine(rt: RuntimeDep) -> HealingEngine:
    """The healing engine; 409 when healing is disabled (it is then not built)."""
    if rt.healing.engine is None:
        raise Conflict("healing is disabled (healing.enabled is false)")
    return rt.healing.engine


async def get_leases(rt: RuntimeDep) -> LeaseManager:
    return rt.replicas.leases


async def get_limiter(rt: RuntimeDep) -> RateLimiter:
    assert rt.limiter is not None, "create_app always builds the rate limiter"
    return rt.limiter


SettingsDep = Annotated[Settings, Depends(get_settings)]
CoreDep = Annotated[Core, Depends(get_core)]
MetricsDep = Annotated[GuardMetrics, Depends(get_metrics)]
EventsDep = Annotated[EventBus, Depends(get_events)]
SecretBoxDep = Annotated[SecretBox, Depends(get_secret_box)]
SchedulerDep = Annotated[Scheduler, Depends(get_scheduler)]
DetectionDep = Annotated[Detection, Depends(get_detection)]
StrategiesDep = Annotated[StrategyRegistry, Depends(get_strategies)]
HealingDep = Annotated[HealingEngine, Depends(get_healing_engine)]
LeasesDep = Annotated[LeaseManager, Depends(get_leases)]
LimiterDep = Annotated[RateLimiter, Depends(get_limiter)]


async def get_session(rt: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """The one transaction owner for a request: commit on success, roll back on error.

    ``scope="function"`` (below) makes the commit happen before the response is sent, so a 2xx is
    only ever returned for data that is durably stored.
    """
    if rt.sessionmaker is None:
        raise ServiceUnavailable("the database is not initialised yet")
    session = rt.sessionmaker()
    try:
        yield session
        await session.commit()
    except PipelineGuardError as exc:
        if getattr(exc, "keeps_transaction", False):
            await session.commit()
        else:
            await session.rollback()
        raise
    except BaseException:
        await session.rollback()
        raise
    finally:
        await session.close()


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_receipt(scheduler: SchedulerDep) -> AsyncIterator[Receipt]:
    """Around a request that stores pings or metric points, its commit included: once the route holds
    it for the components it stores for, this process judges their heartbeats and rule timers as of
    the request's arrival (``monitoring/hearing.py``). Declared before the session (and before any
    dependency that opens it) in a route, so it ends after the session's commit."""
    with scheduler.prober.hearing.receiving() as receipt:
        yield receipt


ReceiptDep = Annotated[Receipt, Depends(get_receipt, scope="function")]


async def get_auth_service(rt: RuntimeDep, session: SessionDep) -> AuthService:
    # ``async def``: a plain ``def`` would cost every authenticated request a hop to the threadpool.
    if rt.codec is None or rt.hasher is None:
        raise ServiceUnavailable("the guard is not started yet")
    return AuthService(session, rt.settings, rt.codec, rt.hasher, rt.callers)


AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]

DEV_PRINCIPAL = Principal(username="anonymous-dev", role=Role.ADMIN)


async def current_principal(
    request: Request,
    settings: SettingsDep,
    auth: AuthServiceDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> Principal:
    if not settings.security.enabled:
        principal = DEV_PRINCIPAL
    elif not token:
        raise Unauthorized("authentication required: send 'Authorization: Bearer <token>'")
    else:
        principal = await auth.authenticate(token)
    request.state.principal = principal
    return principal


CurrentUser = Annotated[Principal, Depends(current_principal)]


def require(permission: Permission) -> Any:
    """A dependency that lets the call through only with ``permission``.

    The permission is recorded on the dependency so the route x role test can find it.
    """

    async def dependency(principal: CurrentUser) -> Principal:
        if permission not in principal.permissions:
            raise Forbidden(f"role {principal.role.value!r} lacks permission {permission.value!r}")
        return principal

    dependency.__permission__ = permission  # type: ignore[attr-defined]
    dependency.__name__ = f"require_{permission.value}"
    return Depends(dependency)


# The caller, let through only with one permission: a type in signatures (``principal: CanTriggerHealing``,
# or ``_: CanAdmin`` when the principal itself is unused).
CanReadMetrics = Annotated[Principal, require(Permission.READ_METRICS)]
CanWriteMetrics = Annotated[Principal, require(Permission.WRITE_METRICS)]
CanMonitorHealth = Annotated[Principal, require(Permission.MONITOR_HEALTH)]
CanTriggerHealing = Annotated[Principal, require(Permission.TRIGGER_HEALING)]
CanManageComponents = Annotated[Principal, require(Permission.MANAGE_COMPONENTS)]
CanAdmin = Annotated[Principal, require(Permission.ADMIN_ACCESS)]
