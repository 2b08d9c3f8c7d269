"""The background services the lifespan starts, in order. Each domain adds its loops here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.background import LoopService
from app.auth.maintenance import TokenCleanup

if TYPE_CHECKING:
    from app.lifespan import GuardState


def build_services(state: GuardState) -> list[LoopService]:
    from app.detection.evaluator import RuleEvaluator
    from app.metrics.retention import MetricsRetention, RollupCompactor

    return [
        TokenCleanup(state),
        RuleEvaluator(state),
        RollupCompactor(state),
        MetricsRetention(state),
    ]
