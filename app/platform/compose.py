"""The composition root: builds every long-lived object of the guard once, in order, at startup.

``compose`` fills the runtime's handles (replicas, monitoring, detection, healing) and subscribes the
event handlers from ONE ordered list (``subscriptions``), so which handlers are live never depends on
which loop or route ran first. ``default_services`` lists the loops the lifespan starts;
``select_services`` applies a test's choice (``create_app(build_services=lambda rt: [...])``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from app.alerts.maintenance import AlertMaintenance
from app.alerts.subscribers import AlertSubscribers
from app.audit.service import AuditRetention
from app.auth.maintenance import TokenCleanup
from app.detection.evaluator import RuleEvaluator
from app.detection.rule_healing import RuleHealing
from app.healing.adapters import build_ports
from app.healing.engine import HealingEngine
from app.healing.loop import HealingLoop
from app.healing.rootcause import RootCauseHandler
from app.healing.rootcause_loop import RootCauseLoop
from app.healing.service import stats_provider
from app.healing.strategies.registry import StrategyRegistry
from app.metrics.cache import MetricsCache
from app.metrics.compaction import RollupCompactor
from app.metrics.retention import MetricsRetention
from app.monitoring.check_metrics import CheckMetrics
from app.monitoring.hearing import Hearing
from app.monitoring.rollups import RollupLoop
from app.monitoring.scheduler import Scheduler, SchedulerLoop
from app.notify.escalation import EscalationLoop
from app.notify.outbox import OutboxSender
from app.platform.core import Core
from app.platform.events import (
    AnomalyCleared,
    AnomalyDetected,
    ComponentDeleted,
    HealthTransition,
    IncidentClosed,
    IncidentOpened,
    IncidentReleased,
)
from app.platform.loops import LoopService
from app.platform.runtime import Detection, Healing, Monitoring, Replicas, Runtime
from app.replicas.manager import LeaseManager

if TYPE_CHECKING:
    from app.platform.events import Handler

log = logging.getLogger("pipeline_guard")


def compose(rt: Runtime) -> None:
    """Build the handles on ``rt`` (its engine, sessionmaker and secret box are set; no I/O here)."""
    assert rt.sessionmaker is not None and rt.engine is not None and rt.secret_box is not None
    settings = rt.settings
    core = rt.core = Core(
        settings=settings, metrics=rt.metrics, sessionmaker=rt.sessionmaker, events=rt.events
    )

    leases = LeaseManager(core, dialect=rt.engine.dialect.name)
    rt.replicas = Replicas(leases=leases)

    conf = settings.caching
    cache = MetricsCache(conf.ttl, conf.max_entries, conf.enabled)
    rt.status_sections.register("cache", cache.stats)
    hearing = Hearing()  # what this process has heard: shared by heartbeat checks and the rule timers
    evaluator = RuleEvaluator(core, hearing=hearing)
    rt.detection = Detection(evaluator=evaluator, cache=cache)

    scheduler = Scheduler(
        core,
        ownership=leases,
        health=rt.component_health,
        critical=rt.critical_components,
        secret_box=rt.secret_box,
        replica_id=leases.replica_id,
        check_metrics=CheckMetrics(core, cache=cache, evaluator=evaluator),
        hearing=hearing,
    )
    leases.scheduler = scheduler
    rt.monitoring = Monitoring(scheduler=scheduler)

    registry = StrategyRegistry(settings, secret_box=rt.secret_box)
    engine: HealingEngine | None = None
    if settings.healing.enabled:
        tasks: set[asyncio.Task[None]] = set()
        closed: set[int] = set()
        engine = HealingEngine(
            core,
            registry=registry,
            ports=build_ports(settings, scheduler, closed, tasks),
            leases=leases,
            closed_incidents=closed,
            tasks=tasks,
        )
        rt.status_sections.register("healing", stats_provider(core))
    rt.healing = Healing(registry=registry, engine=engine)

    for event_type, handler in subscriptions(rt):
        rt.events.subscribe(event_type, handler)


def subscriptions(rt: Runtime) -> list[tuple[type, Handler]]:
    """Every event handler, in the order it runs. Handlers run inside the publisher's transaction."""
    alerts = AlertSubscribers(rt.settings)
    rootcause = RootCauseHandler(rt.settings)
    rule_healing = RuleHealing(rt.events)
    healing = rt.healing.engine
    subs: list[tuple[type, Handler | None]] = [
        # Monitoring publishes "-> healthy" before IncidentClosed and the alerts resolve the health
        # alert on it: healing records the heal (and its resolution_action) first.
        (HealthTransition, healing.incidents.on_health_transition if healing else None),
        (HealthTransition, alerts.on_transition),
        # Root cause first: the alert handlers read its verdict (attributed, held) when they raise.
        (IncidentOpened, rootcause.on_incident_opened),
        (IncidentOpened, alerts.on_incident_opened),
        (IncidentOpened, healing.incidents.on_incident_opened if healing else None),
        (IncidentReleased, healing.incidents.on_incident_released if healing else None),
        (IncidentClosed, healing.incidents.on_incident_closed if healing else None),
        (IncidentClosed, alerts.on_incident_closed),
        (AnomalyDetected, alerts.on_anomaly),
        (AnomalyDetected, rule_healing.on_detected),
        (AnomalyCleared, alerts.on_anomaly_cleared),
        (AnomalyCleared, rule_healing.on_cleared),
        (ComponentDeleted, healing.reconciler.on_component_deleted if healing else None),
    ]
    return [(event_type, handler) for event_type, handler in subs if handler is not None]


def default_services(rt: Runtime) -> list[LoopService]:
    """The loops the lifespan starts, in start order (stopped in reverse, the lease manager first)."""
    core, secret_box = rt.core, rt.secret_box
    assert secret_box is not None
    healing = rt.healing.engine
    return [
        rt.replicas.leases,
        TokenCleanup(core),
        SchedulerLoop(core, rt.monitoring.scheduler, secret_box=secret_box, strategies=rt.healing.registry),
        RollupLoop(core),
        rt.detection.evaluator,
        RollupCompactor(core),
        MetricsRetention(core),
        AlertMaintenance(core, secret_box=secret_box, published=rt.alerts.maintenance_published),
        EscalationLoop(core),
        OutboxSender(core, secret_box=secret_box),
        AuditRetention(core),
        *([HealingLoop(core, healing)] if healing is not None else []),
        RootCauseLoop(
            core.sessionmaker,
            core.settings,
            core.metrics,
            wake=healing.wake if healing else None,
            events=rt.events,
        ),
    ]


def select_services(rt: Runtime, build: Callable[[Runtime], list[LoopService]] | None) -> list[LoopService]:
    """The loops to start: ``build(rt)`` (tests) or all of them. A lease manager left out is detached
    (owns every component, fences nothing) rather than holding no lease for want of a tick."""
    services = (build or default_services)(rt)
    if rt.replicas.leases not in services:
        rt.replicas.leases.detach()
        log.info("replica leases not started: this process owns every component")
    return services


__all__ = ["compose", "default_services", "select_services", "subscriptions"]
