"""The alert upkeep loop: re-open acknowledgements whose snooze ended, apply and lift silences."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.alerts.service import AlertService
from app.background import LoopService
from app.db.session import session_scope

if TYPE_CHECKING:
    from app.lifespan import GuardState


class AlertMaintenance(LoopService):
    name = "alert-maintenance"

    def __init__(self, state: GuardState, *, interval: float | None = None):
        super().__init__(interval or state.settings.alerting.maintenance_interval, metrics=state.metrics)
        self.state = state

    async def run_once(self) -> None:
        async with session_scope(self.state.sessionmaker) as session:
            service = AlertService(session, self.state.settings)
            await service.reopen_expired_acks()
            await service.apply_silences()
