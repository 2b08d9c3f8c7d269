"""The guard's runtime: every long-lived object of one app, typed, in one place.

``create_app`` makes the ``Runtime`` (no I/O); the lifespan fills the database, token codec and
secret box, then ``compose.compose`` builds the domain handles once, in order. Nothing looks objects
up by string key: a collaborator is either an attribute here or passed explicitly to whoever needs it,
so a missing piece is a construction error at startup, not behaviour silently skipped later.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.auth.callers import CallerCache
from app.auth.tokens import PasswordHasher, TokenCodec
from app.config.settings import Settings
from app.health.health_map import HealthMap, overall_health
from app.observability.metrics import GuardMetrics
from app.platform.core import Core
from app.platform.events import EventBus
from app.platform.loops import LoopService
from app.platform.status_sections import StatusSections

if TYPE_CHECKING:
    from app.api.ratelimit import RateLimiter
    from app.detection.evaluator import RuleEvaluator
    from app.healing.engine import HealingEngine
    from app.healing.strategies.registry import StrategyRegistry
    from app.metrics.cache import MetricsCache
    from app.monitoring.scheduler import Scheduler
    from app.replicas.manager import LeaseManager
    from app.security.crypto import SecretBox


@dataclass
class Replicas:
    """Which replica may check and act on which component (``replicas/manager.py``)."""

    leases: LeaseManager


@dataclass
class Monitoring:
    """The check scheduler; its ownership is the lease manager."""

    scheduler: Scheduler


@dataclass
class Detection:
    """The rule evaluator ingest hands points to, and the metrics read cache."""

    evaluator: RuleEvaluator
    cache: MetricsCache


@dataclass
class Healing:
    """The strategy registry (policy validation on the API path uses it too) and the engine, which is
    None when ``healing.enabled`` is false: then nothing subscribes and the API's heal calls are 409."""

    registry: StrategyRegistry
    engine: HealingEngine | None


@dataclass
class Alerts:
    """Components whose maintenance gauge is published (so a deleted one's series is removed)."""

    maintenance_published: set[str] = field(default_factory=set)


@dataclass
class Runtime:
    settings: Settings
    metrics: GuardMetrics
    limiter: RateLimiter | None
    engine: AsyncEngine | None = None
    sessionmaker: async_sessionmaker[AsyncSession] | None = None
    codec: TokenCodec | None = None
    hasher: PasswordHasher | None = None
    # Who is behind a token, remembered for a second (``auth/callers.py``).
    callers: CallerCache = field(default_factory=CallerCache)
    secret_box: SecretBox | None = None
    services: list[LoopService] = field(default_factory=list)
    events: EventBus = field(default_factory=EventBus)
    started_at: float = field(default_factory=time.time)
    schema_ok: bool = False
    # Filled by the monitoring engine: component name -> health status, and which are critical.
    component_health: HealthMap = field(default_factory=HealthMap)
    critical_components: set[str] = field(default_factory=set)
    status_sections: StatusSections = field(default_factory=StatusSections)
    # Built by compose.compose at startup (absent before it runs).
    core: Core = field(init=False)
    replicas: Replicas = field(init=False)
    monitoring: Monitoring = field(init=False)
    detection: Detection = field(init=False)
    healing: Healing = field(init=False)
    alerts: Alerts = field(default_factory=Alerts)

    def health_snapshot(self, full: bool = True) -> dict[str, str]:
        """Every component's status (``full``), or only those neither healthy nor unknown."""
        return dict(self.component_health) if full else self.component_health.not_ok_items()

    def overall_health(self, components: dict[str, str] | None = None) -> str:
        """Critical components drive overall health; others can only degrade it."""
        return overall_health(
            self.component_health if components is None else components, self.critical_components
        )

    async def readiness(self) -> dict[str, dict[str, Any]]:
        checks: dict[str, dict[str, Any]] = {}
        try:
            assert self.engine is not None, "the database is not initialised yet"
            async with asyncio.timeout(2):
                async with self.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            checks["database"] = {"ok": True}
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            checks["database"] = {"ok": False, "error": type(exc).__name__}
        checks["schema"] = {"ok": self.schema_ok}
        stopped = [s.name for s in self.services if not s.running]
        starting = [s.name for s in self.services if s.start_failing]  # its start failed, retried
        checks["background"] = {"ok": not stopped and not starting, "stopped": stopped, "starting": starting}
        return checks
