"""Builds the monitoring objects on the GuardState and returns the loops the lifespan runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.monitoring.ownership import Ownership
from app.monitoring.rollups import RollupLoop
from app.monitoring.scheduler import Scheduler, SchedulerLoop
from app.platform.status_sections import StatusSections

if TYPE_CHECKING:
    from app.platform.loops import LoopService
    from app.platform.lifespan import GuardState


def install(state: GuardState, *, ownership: Ownership | None = None) -> Scheduler:
    """Put the scheduler and the status-section registry on `state.extras` (no I/O)."""
    state.extras.setdefault("status_sections", StatusSections())
    scheduler = state.extras.get("scheduler")
    if scheduler is None:
        scheduler = Scheduler(state, ownership=ownership or state.extras.get("ownership"))
        state.extras["scheduler"] = scheduler
    return scheduler


def monitoring_services(state: GuardState) -> list[LoopService]:
    scheduler = install(state)
    return [SchedulerLoop(state, scheduler), RollupLoop(state)]
