"""The small typed context most domain objects take: settings, metrics, the database, the event bus.

Loops and services take a ``Core`` instead of the whole runtime (``runtime.py``), so they depend on
these four and nothing else of the app; the runtime, which knows every part, builds it at startup.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from app.config.settings import Settings
    from app.observability.metrics import GuardMetrics
    from app.platform.events import EventBus


@dataclass(frozen=True)
class Core:
    """What most domain objects need and nothing more: the small typed context loops and services take
    instead of the whole runtime."""

    settings: Settings
    metrics: GuardMetrics
    sessionmaker: async_sessionmaker[AsyncSession]
    events: EventBus
