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
    from app.lifespan import GuardState

log = logging.getLogger("pipeline_guard.healing")

ENGINE_KEY = "healing.engine"


def configure_process(state: GuardState) -> None:
    """Called by the lifespan before anything validates a recovery policy."""
    from app.lifespan import resolve_secret_key

    configure_default(state.settings)
    try:
        secretbox.configure(secretbox.SecretBox.from_settings(state.settings, resolve_secret_key(state.settings)))
    except secretbox.SecretBoxError as exc:
        secretbox.configure(None)
        log.warning("healing: secret webhook headers unavailable: %s", exc)


def ensure_engine(state: GuardState) -> HealingEngine:
    engine = state.extras.get(ENGINE_KEY)
    if engine is None:
        from app.healing.adapters import build_ports
        from app.healing.engine import HealingEngine
        from app.healing.service import stats_provider
        from app.healing.strategies.registry import default_registry

        engine = HealingEngine(state, registry=default_registry(), ports=build_ports(state))
        engine.wire()
        state.extras[ENGINE_KEY] = engine
        state.extras["healing.wake"] = engine.wake
        state.extras.setdefault("status_sections", {})["healing"] = stats_provider(state)
    return engine


def build_loops(state: GuardState) -> list[HealingLoop]:
    from app.healing.loop import HealingLoop

    if not state.settings.healing.enabled:
        return []
    return [HealingLoop(state, ensure_engine(state))]
