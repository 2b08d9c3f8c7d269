"""Builds healing's long-lived objects once per app: the strategy registry (with the settings that
enable command actions), the secret box, the engine (subscribed to incident events) and its loop."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from app.healing import secretbox
from app.healing.strategies.registry import configure_default

if TYPE_CHECKING:
    from app.healing.engine import HealingEngine
    from app.healing.loop import HealingLoop
    from app.platform.lifespan import GuardState

log = logging.getLogger("pipeline_guard.healing")

ENGINE_KEY = "healing.engine"


def configure_process(state: GuardState) -> None:
    """Called by the lifespan before anything validates a recovery policy."""
    configure_default(state.settings)
    try:
        from app.security.crypto import secret_box

        secretbox.configure(secret_box(state))
    except Exception as exc:  # noqa: BLE001 - only secret webhook headers need it
        secretbox.configure(None)
        log.warning("healing: secret webhook headers unavailable: %s", exc)


def ensure_engine(state: GuardState) -> HealingEngine:
    engine = state.extras.get(ENGINE_KEY)
    if engine is None:
        from app.healing.engine import HealingEngine
        from app.healing.service import stats_provider
        from app.healing.strategies.registry import default_registry

        engine = HealingEngine(state, registry=default_registry())
        engine.wire()
        state.extras[ENGINE_KEY] = engine
        state.extras["healing.wake"] = engine.wake
        state.extras["status_sections"].register("healing", stats_provider(state))
    return engine


def build_loops(state: GuardState) -> list[HealingLoop]:
    from app.healing.loop import HealingLoop

    if not state.settings.healing.enabled:
        return []
    return [HealingLoop(state, ensure_engine(state))]
