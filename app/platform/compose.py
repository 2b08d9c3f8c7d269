"""The background services the lifespan starts, in order. Each domain adds its loops here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.auth.maintenance import TokenCleanup
from app.platform.loops import LoopService
from app.monitoring.wiring import monitoring_services

if TYPE_CHECKING:
    from app.platform.lifespan import GuardState


def build_services(state: GuardState) -> list[LoopService]:
    from app.alerts.maintenance import AlertMaintenance
    from app.alerts.subscribers import wire as wire_alerts
    from app.audit.service import AuditRetention
    from app.detection.evaluator import RuleEvaluator
    from app.healing.wiring import build_loops as healing_loops
    from app.metrics.compaction import RollupCompactor
    from app.metrics.retention import MetricsRetention
    from app.notify.escalation import EscalationLoop
    from app.notify.outbox import OutboxSender
    from app.replicas.manager import install as install_leases

    # Before the scheduler is built: it takes its Ownership from state.extras["ownership"].
    lease_manager = install_leases(state)
    wire_alerts(state)
    from app.detection.rule_healing import wire as wire_rule_healing
    from app.healing.rootcause import build_loops as rootcause_loops

    wire_rule_healing(state)
    return [
        lease_manager,
        TokenCleanup(state),
        *monitoring_services(state),
        RuleEvaluator(state),
        RollupCompactor(state),
        MetricsRetention(state),
        AlertMaintenance(state),
        EscalationLoop(state),
        OutboxSender(state),
        AuditRetention(state),
        *healing_loops(state),
        *rootcause_loops(state),
    ]
