"""The alert upkeep loop: re-open acknowledgements whose snooze ended, apply and lift silences
(maintenance windows open and close on their schedule), and publish which components are in a
window to /metrics."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts.service import AlertService
from app.alerts.silences import SilenceService, silence_matches
from app.db.models import Component
from app.db.session import session_scope
from app.platform.loops import LoopService

if TYPE_CHECKING:
    from app.observability.metrics import GuardMetrics
    from app.platform.core import Core
    from app.security.crypto import SecretBox

log = logging.getLogger("pipeline_guard.alerts")

# Boot waits this long for each declared-config sync; past it the guard starts without (logged).
PREPARE_TIMEOUT_S = 30.0


class AlertMaintenance(LoopService):
    name = "alert-maintenance"

    def __init__(
        self, state: Core, *, secret_box: SecretBox, published: set[str], interval: float | None = None
    ):
        """``secret_box``: for the declared channels' credentials; ``published``: the runtime's set of
        components with a maintenance gauge."""
        super().__init__(interval or state.settings.alerting.maintenance_interval, metrics=state.metrics)
        self.state = state
        self.secret_box = secret_box
        self.published = published

    async def prepare(self) -> None:
        """The maintenance windows and channels the config file declares are in the database before
        the guard reports ready, so the API lists them from the first request."""
        from app.alerts.windows import sync_declared_windows
        from app.notify.declarative import sync_declared_channels

        syncs = (
            ("maintenance windows", lambda: sync_declared_windows(self.state)),
            ("channels", lambda: sync_declared_channels(self.state, self.secret_box)),
        )
        for what, sync in syncs:
            try:
                async with asyncio.timeout(PREPARE_TIMEOUT_S):
                    report = await sync()
            except Exception:  # a bad declaration (or a slow database) must not stop the guard
                log.exception("syncing the %s declared in the configuration failed", what)
            else:
                if any(report.values()):
                    log.info("declared %s synced: %s", what, {k: v for k, v in report.items() if v})

    async def run_once(self) -> None:
        async with session_scope(self.state.sessionmaker) as session:
            service = AlertService(session, self.state.settings)
            await service.reopen_expired_acks()
            await service.apply_silences()
            await publish_maintenance(self.state.metrics, self.published, session)


async def publish_maintenance(
    metrics: GuardMetrics, published: set[str], session: AsyncSession, now: datetime | None = None
) -> set[str]:
    """Set the maintenance gauges from the windows open at ``now``; returns the components in one.
    ``published``: the components with a gauge so far (updated here)."""
    open_now = await SilenceService(session).active(now)
    rows = (
        await session.execute(select(Component.name, Component.labels).where(Component.enabled.is_(True)))
    ).all()
    inside = {name for name, labels in rows if any(silence_matches(s, name, labels or {}) for s in open_now)}
    metrics.maintenance_windows_open.set(len(open_now))
    known = {name for name, _ in rows}
    for gone in published - known:
        metrics.component_in_maintenance.remove(gone)
    for name in known:
        metrics.component_in_maintenance.labels(name).set(1 if name in inside else 0)
    published.clear()
    published.update(known)
    return inside
