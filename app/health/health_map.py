"""The in-memory map component name -> health status that /health and /api/v1/status read.

A plain dict that also keeps, as it is written, the names whose status is neither healthy nor
unknown (all of them, and per status) and a count per status, so that the overall health, the
/health body and the healthy share never walk the fleet: at 20,000 components a liveness probe
must cost what it costs at 20. The per-status sets let both be answered with set operations
(intersections with the critical components, the few smallest names of a status) instead of a
Python-level pass over every component that is not healthy.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

OK_STATUSES = frozenset({"healthy", "unknown"})
UNHEALTHY = frozenset({"critical", "failed"})


class HealthMap(dict[str, str]):
    """Every mutating dict method keeps ``not_ok`` and ``counts`` in step (tests and the scheduler
    write the map directly)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.not_ok: set[str] = set()
        self.not_ok_by_status: dict[str, set[str]] = {}
        self.counts: Counter[str] = Counter()
        self.update(*args, **kwargs)

    def _track_out(self, name: str) -> None:
        old = dict.get(self, name)
        if old is not None:
            self.counts[old] -= 1
            if self.counts[old] <= 0:
                del self.counts[old]
            if old not in OK_STATUSES:
                self.not_ok.discard(name)
                names = self.not_ok_by_status[old]
                names.discard(name)
                if not names:
                    del self.not_ok_by_status[old]

    def __setitem__(self, name: str, status: str) -> None:
        self._track_out(name)
        dict.__setitem__(self, name, status)
        self.counts[status] += 1
        if status not in OK_STATUSES:
            self.not_ok.add(name)
            self.not_ok_by_status.setdefault(status, set()).add(name)

    def __delitem__(self, name: str) -> None:
        if name in self:
            self._track_out(name)
        dict.__delitem__(self, name)

    _MISSING = object()

    def pop(self, name: str, default: Any = _MISSING) -> Any:
        if name in self:
            self._track_out(name)
            return dict.pop(self, name)
        if default is HealthMap._MISSING:
            raise KeyError(name)
        return default

    def popitem(self) -> tuple[str, str]:
        name, status = dict.popitem(self)
        dict.__setitem__(self, name, status)
        self._track_out(name)
        dict.__delitem__(self, name)
        return name, status

    def setdefault(self, name: str, default: str) -> str:  # type: ignore[override]
        if name not in self:
            self[name] = default
        return dict.__getitem__(self, name)

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        source: Iterable[tuple[str, str]]
        for arg in (*args, kwargs):
            source = arg.items() if isinstance(arg, Mapping) else arg
            for name, status in source:
                self[name] = status

    def clear(self) -> None:
        dict.clear(self)
        self.not_ok.clear()
        self.not_ok_by_status.clear()
        self.counts.clear()

    def not_ok_items(self) -> dict[str, str]:
        """The components whose status is neither healthy nor unknown, by name."""
        return {name: dict.__getitem__(self, name) for name in sorted(self.not_ok)}

    def any_critical_down(self, critical: set[str]) -> bool:
        """Whether a critical component is critical or failed."""
        by_status = self.not_ok_by_status
        return any(status in by_status and not critical.isdisjoint(by_status[status]) for status in UNHEALTHY)

    def worst(self, critical: set[str], limit: int) -> list[str]:
        """``most_severe``'s choice, group by group in its order: critical components that are down
        (failed, then critical), then every status by severity (a critical component only once),
        then any other status; the smallest names of each group first."""
        by_status = self.not_ok_by_status
        chosen: list[str] = []

        def take(names: set[str]) -> None:
            wanted = limit - len(chosen)
            # Sorting in C beats heapq's loop in Python up to a few thousand names.
            chosen.extend(sorted(names)[:wanted] if len(names) <= 2000 else heapq.nsmallest(wanted, names))

        down = [s for s in SEVERITY if s in UNHEALTHY and s in by_status]
        for status in down:
            if len(chosen) < limit:
                take(by_status[status] & critical)
        for status in SEVERITY:
            if len(chosen) < limit and status in by_status:
                take(by_status[status] - critical if status in down else by_status[status])
        others = [names for status, names in by_status.items() if status not in SEVERITY]
        if len(chosen) < limit and others:
            take(set().union(*others))
        return chosen


# Worst first when /health lists only a few of the components that are not healthy.
SEVERITY = {"failed": 0, "critical": 1, "recovering": 2, "degraded": 3}


def most_severe(components: Mapping[str, str], critical: set[str], limit: int) -> tuple[dict[str, str], int]:
    """At most ``limit`` of the components that are neither healthy nor unknown, worst first (critical
    components, then by status, then by name), and how many more there are. Set operations on a
    ``HealthMap``; the body /health builds from it stays the same size at any fleet size."""
    if isinstance(components, HealthMap):
        worst = components.worst(critical, limit)
        return {name: components[name] for name in worst}, len(components.not_ok) - len(worst)
    names = [n for n, s in components.items() if s not in OK_STATUSES]

    def rank(name: str) -> tuple[bool, int, str]:
        status = components[name]
        return name not in critical or status not in UNHEALTHY, SEVERITY.get(status, len(SEVERITY)), name

    chosen = heapq.nsmallest(limit, names, key=rank)
    return {name: components[name] for name in chosen}, len(names) - len(chosen)


def overall_health(components: Mapping[str, str], critical: set[str]) -> str:
    """Critical components drive overall health; others can only degrade it. On a ``HealthMap`` only
    the components that are not healthy are looked at, as sets."""
    if isinstance(components, HealthMap):
        if components.any_critical_down(critical):
            return "critical"
        return "degraded" if components.not_ok else "healthy"
    names: Iterable[str] = components
    worst = "healthy"
    for name in names:
        status = components[name]
        if status in UNHEALTHY and name in critical:
            return "critical"
        if status not in OK_STATUSES:
            worst = "degraded"
    return worst
