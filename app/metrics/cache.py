"""In-memory TTL cache for hot metric reads (summaries, latest), invalidated on write.

Entries are tagged with a component; a write to a component bumps its generation, which makes
every entry filled under an older generation a miss. Per-process: each replica caches what it
served, and a write through another replica is seen after at most ``ttl`` seconds.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import Any

_MISSING = object()


class MetricsCache:
    def __init__(self, ttl: float = 5.0, max_entries: int = 4096, enabled: bool = True):
        self.enabled = enabled
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[float, int, str | None, Any]] = OrderedDict()
        self._generation: dict[str | None, int] = {}
        self.hits = 0
        self.misses = 0
        self.invalidations = 0

    def get(self, key: Hashable) -> Any:
        """The cached value, or _MISSING; an entry is valid while its component's generation is."""
        if not self.enabled:
            self.misses += 1
            return _MISSING
        entry = self._entries.get(key)
        if entry is not None:
            expires, gen, comp, value = entry
            if expires > time.monotonic() and gen == self._gen(comp):
                self.hits += 1
                self._entries.move_to_end(key)
                return value
            del self._entries[key]
        self.misses += 1
        return _MISSING

    def put(self, key: Hashable, component: str | None, value: Any, generation: int | None = None) -> None:
        """Store ``value``; pass the ``generation`` read *before* computing it, so a write that
        raced with the computation leaves the entry stale instead of hiding the write."""
        if not self.enabled:
            return
        gen = self._gen(component) if generation is None else generation
        self._entries[key] = (time.monotonic() + self.ttl, gen, component, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def generation(self, component: str | None) -> int:
        return self._gen(component)

    def _gen(self, component: str | None) -> int:
        # Entries that span components (component=None) depend on every write: the global counter.
        return self._generation.get(component, 0)

    def invalidate(self, components: Iterable[str]) -> None:
        for c in components:
            self._generation[c] = self._generation.get(c, 0) + 1
        self._generation[None] = self._generation.get(None, 0) + 1
        self.invalidations += 1

    def stats(self) -> dict[str, Any]:
        total = self.hits + self.misses
        return {
            "hits": self.hits,
            "misses": self.misses,
            "entries": len(self._entries),
            "invalidations": self.invalidations,
            "hit_rate": (self.hits / total) if total else 0.0,
            "ttl_seconds": self.ttl,
            "max_entries": self.max_entries,
            "enabled": self.enabled,
        }


MISSING = _MISSING
