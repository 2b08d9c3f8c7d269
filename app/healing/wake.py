"""How the healing loop is woken: an incident handed over by the transaction that opened (or
worsened) it, or a plain wake-up asking for a pass over every open incident.

A hand-over names the incident, so the loop decides that one at once instead of first listing the
open incidents; `set()` (an attempt that ended, the reconciler, an operator, a hold released) still
asks for the whole pass. Both wake the same waiter, so a caller that only knows ``wake.set()`` keeps
working.
"""

from __future__ import annotations

import asyncio

MAX_HANDED_OVER = 10_000


class Wake(asyncio.Event):
    def __init__(self) -> None:
        super().__init__()
        self._incidents: dict[int, None] = {}  # handed over, in order, each once
        self._sweep = False

    def set(self) -> None:
        """A pass over every open incident is wanted."""
        self._sweep = True
        super().set()

    def hand_over(self, incident_id: int) -> None:
        """This incident (just committed as opened or worse) is decided next, on its own."""
        if len(self._incidents) >= MAX_HANDED_OVER:  # nobody takes them (no loop runs): a pass covers all
            self._incidents.clear()
            self._sweep = True
        self._incidents[incident_id] = None
        super().set()

    def take(self) -> tuple[list[int], bool]:
        """What woke the loop since the last call: (incidents handed over, whether a full pass is wanted)."""
        self.clear()
        incidents, self._incidents = list(self._incidents), {}
        sweep, self._sweep = self._sweep, False
        return incidents, sweep
