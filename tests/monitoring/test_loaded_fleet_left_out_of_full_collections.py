"""What the scheduler loads in its first iteration (a check entry per component) lives as long as
the process: once every loop has run once, the start moves it out of the cyclic GC's scans, so a
full collection does not walk the whole fleet while a probe result waits for its healing action."""

from __future__ import annotations

import asyncio
import gc

from tests.conftest import running_guard
from tests.monitoring.conftest import add_component, mon_settings


def scanned_by_gc(obj: object) -> bool:
    """Frozen objects are in no generation `gc.get_objects()` lists."""
    return any(o is obj for o in gc.get_objects())


async def test_entries_loaded_by_the_first_refresh_are_frozen(db_url, tmp_path, http_target):
    from app.monitoring.scheduler import SchedulerLoop

    settings = mon_settings(db_url, tmp_path)
    async with running_guard(settings) as guard:
        await add_component(guard, "web", {"kind": "http", "url": http_target.url("/ok")})

    def scheduler_only(rt):
        return [
            SchedulerLoop(
                rt.core, rt.monitoring.scheduler, secret_box=rt.secret_box, strategies=rt.healing.registry
            )
        ]

    async with running_guard(settings, build_services=scheduler_only) as guard:
        scheduler = guard.runtime.monitoring.scheduler
        async with asyncio.timeout(30):
            while not scheduler.entries:
                await asyncio.sleep(0.05)
        (entry,) = scheduler.entries.values()
        # Loaded after the start froze what it had built: scanned until the heap is settled.
        async with asyncio.timeout(30):
            while scanned_by_gc(entry):
                await asyncio.sleep(0.2)
        assert scheduler.entries  # still loaded: frozen, not collected
