"""Adapters from healing's ports to the real services of other domains, when they are present.

Until the alerts and monitoring services are merged the defaults in ``ports.py`` apply; a domain can
also publish its own implementation in ``state.extras`` under ``healing.alert_sink``,
``healing.silence_checker`` or ``healing.recovery_notifier`` before the engine is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.healing.ports import HealingPorts, LogAlertSink, NoSilences, StateRecoveryNotifier

if TYPE_CHECKING:
    from app.lifespan import GuardState


def build_ports(state: GuardState) -> HealingPorts:
    extras = state.extras
    return HealingPorts(
        alerts=extras.get("healing.alert_sink") or LogAlertSink(),
        silences=extras.get("healing.silence_checker") or NoSilences(),
        recovery=extras.get("healing.recovery_notifier") or StateRecoveryNotifier(extras),
    )
