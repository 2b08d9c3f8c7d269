"""Background upkeep for auth: drop revocations of tokens that have expired anyway."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from app.auth.repository import RevocationRepository
from app.db.session import session_scope
from app.platform.loops import LoopService

if TYPE_CHECKING:
    from app.platform.core import Core


class TokenCleanup(LoopService):
    name = "token-cleanup"

    def __init__(self, state: Core, interval: float = 3600.0):
        super().__init__(interval, metrics=state.metrics)
        self.state = state

    async def run_once(self) -> None:
        async with session_scope(self.state.sessionmaker) as session:
            await RevocationRepository(session).purge_expired(datetime.now(UTC))
