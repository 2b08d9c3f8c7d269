"""A short-lived memory of who is behind a token, so a stream of requests with one token (a pipeline
pushing metric batches) does not cost a database lookup each.

What is kept is what authenticating needs from the database for one (user, token id): the user's
id, name, role, disabled flag and token version, and whether the token id is revoked. An entry lives
``TTL_S`` seconds. Every change to users or tokens made through this process (a user created,
disabled or enabled, a role changed, a password reset, a token revoked) forgets every entry when it
commits, and a lookup that was under way meanwhile is not kept (``generation``): on this replica a
change takes effect on the next request. Another replica learns of it within ``TTL_S``.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

TTL_S = 1.0
MAX_ENTRIES = 1024

# (id, username, role, disabled, token_version, revoked): the columns of ``UserRepository.caller``.
CallerRow = tuple[int, str, str, bool, int, bool]


class CallerCache:
    def __init__(self, ttl: float = TTL_S, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.generation = 0  # moves on every change: a lookup begun before it is not kept
        self._entries: dict[tuple[str, str], tuple[float, CallerRow]] = {}

    def get(self, subject: str, jti: str) -> CallerRow | None:
        entry = self._entries.get((subject, jti))
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._entries[(subject, jti)]
            return None
        return entry[1]

    def put(self, subject: str, jti: str, row: Any, generation: int) -> None:
        """Keep ``row`` (read from the database after ``generation`` was current) unless something
        changed since."""
        if generation != self.generation:
            return
        if len(self._entries) >= self.max_entries:
            now = time.monotonic()
            self._entries = {k: e for k, e in self._entries.items() if e[0] > now}
            if len(self._entries) >= self.max_entries:
                del self._entries[next(iter(self._entries))]  # the oldest
        self._entries[(subject, jti)] = (time.monotonic() + self.ttl, tuple(row))

    def forget_all(self) -> None:
        self.generation += 1
        self._entries.clear()

    def forget_on_commit(self, session: AsyncSession) -> None:
        """A change to users or tokens is in ``session``'s transaction: forget every entry now (a
        lookup under way is not kept) and again once it commits (what was read meanwhile is stale)."""
        self.forget_all()
        event.listen(session.sync_session, "after_commit", lambda _session: self.forget_all(), once=True)
