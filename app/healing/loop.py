"""The healing loop: evaluates open incidents every ``interval`` and at once when an incident opens.

The periodic pass catches what an event cannot (back-off expiring, verification deadlines, approvals
expiring); the wake-up keeps detection-to-action latency to the cost of one decision: an incident
handed over on its opening commit is decided on its own, at once, while a wake-up that asks for a
whole pass (an attempt ended, an operator acted) runs that pass in its own task, so a hand-over
never waits behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from app.platform.loops import LoopService

if TYPE_CHECKING:
    from app.healing.engine import HealingEngine
    from app.platform.core import Core

log = logging.getLogger("pipeline_guard.healing")


class HealingLoop(LoopService):
    name = "healing"

    def __init__(self, state: Core, engine: HealingEngine, interval: float = 1.0) -> None:
        super().__init__(interval, metrics=state.metrics)
        self.state = state
        self.engine = engine
        self._waker: asyncio.Task | None = None
        self._sweeper: asyncio.Task | None = None
        self._sweep_again = False

    async def on_start(self) -> None:
        await self.engine.recover_interrupted()
        await prime_outcome_counters(self.state)
        self._waker = asyncio.create_task(self._wake_loop(), name="healing:wake")

    async def on_stop(self) -> None:
        for task in (self._waker, self._sweeper):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):  # cancelled on purpose
                    await task
        self._waker = self._sweeper = None
        await self.engine.stop()

    async def _wake_loop(self) -> None:
        wake = self.engine.wake
        while True:
            await wake.wait()
            incidents, sweep = wake.take()
            if sweep:
                self._sweep_soon()
            if incidents:
                try:
                    await self.engine.react(incidents)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("healing decision on hand-over failed")

    def _sweep_soon(self) -> None:
        """A pass over every open incident, in its own task; asked again while one runs: once more
        after it."""
        self._sweep_again = True
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep(), name="healing:sweep")

    async def _sweep(self) -> None:
        while self._sweep_again:
            self._sweep_again = False
            try:
                await self.engine.evaluate(housekeeping=False)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("healing evaluation on wake-up failed")

    async def run_once(self) -> None:
        await self.engine.evaluate()


async def prime_outcome_counters(state: Core) -> None:
    """Every known (component, strategy) shows its outcome counters at 0 from the start."""
    from sqlalchemy import select

    from app.db.models import Component
    from app.db.session import session_scope

    async with session_scope(state.sessionmaker) as session:
        rows = (
            await session.execute(
                select(Component.name, Component.recovery).where(Component.recovery.is_not(None))
            )
        ).all()
    for name, recovery in rows:
        state.metrics.prime_healing_policy(name, recovery)
