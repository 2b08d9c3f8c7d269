"""Exact moving-window rate limits kept in this process's memory, on the monotonic clock.

Why not the `limits` library's MemoryStorage: it starts a background task that wakes every 10 ms
and hands its expiry sweep to a worker thread; on a loaded machine that thread's wake-ups and GIL
hand-offs were a quarter of a /health request's profile. Here nothing runs between requests: a
hit drops the timestamps that left its own window, and forgotten keys are swept in passing, at
most once per ``SWEEP_INTERVAL_S``.

Semantics match the library's moving window: at most ``amount`` hits in any ``expiry``-second
window; a refused hit is not recorded; the wait reported is until the oldest counted hit leaves.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from limits import RateLimitItem


class MemoryWindows:
    """Per (group, key) the monotonic times of the hits still inside the window, oldest first."""

    SWEEP_INTERVAL_S = 30.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[tuple[str, str], tuple[float, deque[float]]] = {}
        self._next_sweep = clock() + self.SWEEP_INTERVAL_S

    def __len__(self) -> int:
        return len(self._windows)

    def hit(self, limit: RateLimitItem, group: str, key: str) -> float | None:
        """Count one hit; return None when allowed, else the seconds until one would be."""
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        expiry = float(limit.get_expiry())
        entry = self._windows.get((group, key))
        if entry is None:
            entry = self._windows[(group, key)] = (expiry, deque())
        window = entry[1]
        horizon = now - expiry
        _forget_before(window, horizon)
        if len(window) < limit.amount:
            window.append(now)
            return None
        return window[0] - horizon if window else expiry

    def exhausted(self, limit: RateLimitItem, group: str, key: str) -> bool:
        """Whether the next hit would be refused (counts nothing)."""
        entry = self._windows.get((group, key))
        if entry is None:
            return limit.amount < 1
        window = entry[1]
        _forget_before(window, self._clock() - float(limit.get_expiry()))
        return len(window) >= limit.amount

    def reset(self) -> None:
        self._windows.clear()

    def _sweep(self, now: float) -> None:
        """Forget keys whose every hit has left the window (their state is the empty state)."""
        self._next_sweep = now + self.SWEEP_INTERVAL_S
        stale = [
            k for k, (expiry, window) in self._windows.items() if not window or window[-1] <= now - expiry
        ]
        for k in stale:
            del self._windows[k]


def _forget_before(window: deque[float], horizon: float) -> None:
    """Drop the hits at or before ``horizon`` (they have left the moving window)."""
    while window and window[0] <= horizon:
        window.popleft()
