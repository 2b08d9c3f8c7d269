"""The scheduler's component tracking: which owned components it checks, kept in step with the
database on every refresh (added, edited, re-created, disabled, deleted, taken over), and the health
map and gauges published from the tracked statuses. `Scheduler` (scheduler.py) mixes it in; the
probe dispatch and the lifecycle stay there.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Component, ComponentState
from app.db.session import session_scope
from app.monitoring.probes import Entry, check_config
from app.monitoring.tracked import Tracked

if TYPE_CHECKING:
    from app.components.registry_watch import RegistryWatch
    from app.config.settings import Settings
    from app.health.health_map import HealthMap
    from app.monitoring.ownership import Ownership
    from app.monitoring.probe_metrics import ProbeMetrics
    from app.monitoring.probes import Prober
    from app.monitoring.timetable import Timetable
    from app.platform.core import Core


class DiffedAt(NamedTuple):
    """What the last diff saw: the registry watch's snapshot (the same object while the components
    table stands still), the ownership's generation (moves when a lease does) and the tracked
    generation (moves when a component is loaded or forgotten)."""

    snapshot: dict[int, tuple[int, Any]]
    ownership_generation: int | None
    tracked_generation: int


class ComponentTracking:
    """Refresh and forget the tracked components (the attributes are set by `Scheduler.__init__`)."""

    state: Core
    settings: Settings
    health: HealthMap
    critical: set[str]
    ownership: Ownership
    prober: Prober
    probe_metrics: ProbeMetrics
    registry_watch: RegistryWatch
    timetable: Timetable
    entries: dict[int, Entry]
    tracked: dict[int, Tracked]
    lags: deque[float]
    _versions: dict[int, tuple[int, Any]]
    _tracked_generation: int
    _published_generation: int
    _loaded: bool
    _refresh_lock: asyncio.Lock
    _requested: set[int]
    _diffed: DiffedAt | None  # as of the last diff
    _owns_every_enabled: bool  # the last diff found every enabled component owned here

    # ------------------------------------------------------------------ refresh
    async def refresh(self) -> None:
        async with self._refresh_lock:
            await self._refresh()

    async def _refresh(self) -> None:
        async with session_scope(self.state.sessionmaker) as session:
            enabled = await self.registry_watch.enabled_versions(session)
            ownership_generation = getattr(self.ownership, "generation", None)
            seen = DiffedAt(enabled, ownership_generation, self._tracked_generation)
            diffed = self._diffed
            # Steady state: the registry watch returned the same snapshot (nothing changed in the
            # components table), ownership did not move and nothing was loaded or forgotten since the
            # last diff, so the diff would find nothing: skip it (it cost O(fleet) every second).
            if not (
                diffed is not None
                and ownership_generation is not None
                and diffed.snapshot is enabled
                and diffed.ownership_generation == ownership_generation
                and diffed.tracked_generation == seen.tracked_generation
            ):
                await self._diff(session, enabled)
                # As of its start: what it loaded or forgot, or a flush forgot meanwhile, makes the
                # next refresh diff once more (and find nothing, unless something else moved).
                self._diffed = seen
        for cid in list(self._requested):
            if cid in self.entries:
                self.timetable.make_due_now(self.entries[cid])
            self._requested.discard(cid)
        self._loaded = True
        # The whole health map is rebuilt only when the set of components moved; a flush keeps the
        # statuses up to date in between (rebuilding it every second cost O(fleet) per tick).
        self._publish_health(None if self._membership_moved() else ())

    async def _diff(self, session: AsyncSession, enabled: dict[int, tuple[int, Any]]) -> None:
        """Load what was added, edited or taken over, forget what went (disabled, deleted, handed over)."""
        owned = await self.ownership.owned(set(enabled))
        self._owns_every_enabled = len(owned) == len(enabled)
        current = enabled if self._owns_every_enabled else {cid: enabled[cid] for cid in owned}
        versions = self._versions
        changed = [cid for cid, v in current.items() if versions.get(cid) != v]
        if len(versions) != len(current) or changed:
            for gone in set(versions) - current.keys():
                self._forget(gone)
        for cid in changed:
            seen = versions.get(cid)
            if seen is not None and seen[1] != current[cid][1]:
                self._forget(cid)  # another component under a known id: start from scratch
        for start in range(0, len(changed), 500):
            chunk = changed[start : start + 500]
            components = (
                (await session.execute(select(Component).where(Component.id.in_(chunk))))
                .unique()
                .scalars()
                .all()
            )
            for component in components:
                await self._load(session, component)

    def _membership_moved(self) -> bool:
        moved = self._tracked_generation != self._published_generation
        self._published_generation = self._tracked_generation
        return moved

    async def _load(self, session: AsyncSession, component: Component) -> None:
        self._versions[component.id] = (component.version, component.created_at)
        self._tracked_generation += 1  # added, renamed or re-configured: the health map is rebuilt
        check = component.check
        if not check or not isinstance(check, dict) or "kind" not in check:
            self._forget(component.id, keep_version=True)
            return
        config = check_config(check, self.settings.monitoring)
        thresholds, interval = config.thresholds, config.interval
        tracked = self.tracked.get(component.id)
        if tracked is None:
            if component.state is None:
                await session.execute(insert(ComponentState).values(component_id=component.id))
            self.tracked[component.id] = Tracked.restore(component, thresholds)
        else:
            tracked.critical, tracked.labels, tracked.thresholds = (
                component.critical,
                dict(component.labels or {}),
                thresholds,
            )
        entry = self.entries.get(component.id)
        if entry is None:
            entry = Entry(
                component.id,
                component.name,
                component.version,
                config.kind,
                config.params,
                interval,
                config.timeout,
            )
            self.entries[component.id] = entry
            handover_due = getattr(self.ownership, "handover_due", None)
            due = handover_due(component.id) if handover_due is not None else None
            if due is not None:
                # Taken over from another replica: first check when that replica would have run it
                # (at once if overdue), so the hand-over adds no gap.
                self.timetable.schedule_exact(entry, max(due, time.monotonic()))
            else:
                # Spread the first runs over one interval so a restart does not probe everything at once.
                self.timetable.schedule(entry, time.monotonic() + random.uniform(0, interval))
        else:
            rescheduled = entry.interval != interval
            entry.version, entry.kind, entry.params, entry.interval, entry.timeout = (
                component.version,
                config.kind,
                config.params,
                interval,
                config.timeout,
            )
            entry.name, entry.counters = component.name, None
            if rescheduled:
                self.timetable.schedule(entry, time.monotonic() + random.uniform(0, interval))
        self.prober.validate(entry)
        if component.critical:
            self.critical.add(component.name)
        else:
            self.critical.discard(component.name)

    def _forget(self, component_id: int, *, keep_version: bool = False) -> None:
        entry = self.entries.pop(component_id, None)
        if entry is not None:
            entry.generation += 1  # its heap items become stale
        tracked = self.tracked.pop(component_id, None)
        self._tracked_generation += 1
        if not keep_version:
            self._versions.pop(component_id, None)
        if tracked is not None:
            self.health.pop(tracked.name, None)
            self.critical.discard(tracked.name)
            self.probe_metrics.forget(tracked.name)

    # ------------------------------------------------------------------ health map and metrics
    def _publish_health(self, changed: Iterable[int] | None = None) -> None:
        """Refresh the health map and the Prometheus gauges: for the components in `changed` (a
        flush), or for all (a refresh). Gauges are only touched when a status changed."""
        health = self.health
        if changed is None:
            health.clear()
            items = [(t.name, t.machine.status) for t in self.tracked.values()]
        else:
            items = [
                (t.name, t.machine.status) for cid in changed if (t := self.tracked.get(cid)) is not None
            ]
        self.probe_metrics.publish_health(
            health, items, full=changed is None, last_lag=self.lags[-1] if self.lags else None
        )
