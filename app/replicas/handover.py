"""SIGTERM: the lease manager hands its leases over, then marks its replica gone.

First the replica marks itself ``draining`` (the others start polling fast for the leases they want),
then hands each lease over right after its next probe is written (in that flush's transaction) — or
at once, with its due time, when that probe is further away than the others need to notice; what is
left is released at once, with each component's next due time (database clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from app.db.session import session_scope
from app.replicas import registry

if TYPE_CHECKING:
    from app.replicas.manager import LeaseManager

log = logging.getLogger("pipeline_guard.replicas")

DRAIN_MAX_S = 5.0  # longest hand-over of leases one by one before releasing the rest at once
HANDOVER_LEAD_S = 0.6  # a check due later than this is handed over at once with its due time


async def release_all(manager: LeaseManager, *, drain: bool) -> None:
    """Stop acting, hand every lease over and mark this replica gone (SIGTERM path). With `drain`
    (and a running scheduler), leases are handed over one by one right after their next probe
    (bounded by DRAIN_MAX_S), so the next holder's first check comes one interval after ours."""
    if manager._closing:
        return
    manager._closing = True
    if drain and not manager.single and manager._registered and manager.state.sessionmaker is not None:
        try:
            await hand_over_one_by_one(manager)
        except Exception as exc:  # noqa: BLE001 - the rest is released below, or expires
            log.warning("replica %s: draining its leases failed (%s)", manager.replica_id, type(exc).__name__)
    stop_probing = getattr(manager.scheduler, "stop_probing", None)
    if drain and stop_probing is not None:
        # Probing stops and what ran is written while the leases are still held, before they go.
        await stop_probing()
    remaining = set(manager.epochs)
    due_in = manager._due_in(remaining)
    manager._released = True
    manager.epochs.clear()
    manager.deadlines.clear()
    manager._gen += 1
    if not manager._registered or manager.state.sessionmaker is None:
        return
    try:
        async with asyncio.timeout(3):
            async with session_scope(manager.state.sessionmaker) as session:
                await manager.store.release(session, manager.replica_id, None, due_in)
                await registry.mark(session, manager.replica_id, registry.GONE)
        log.info("replica %s released its leases", manager.replica_id)
    except Exception as exc:  # noqa: BLE001 - the leases then expire after their TTL
        log.warning(
            "replica %s could not release its leases (%s); they expire within %.0fs",
            manager.replica_id,
            type(exc).__name__,
            manager.ttl,
        )
    with contextlib.suppress(KeyError):
        manager.state.metrics.replica_leases.remove(manager.replica_id)


async def hand_over_one_by_one(manager: LeaseManager) -> None:
    """Mark this replica draining, then hand each lease over right after its next probe (or at once,
    with its due time, when that probe is further away than HANDOVER_LEAD_S), within DRAIN_MAX_S."""
    scheduler = manager.scheduler
    if scheduler is None or not getattr(scheduler, "dispatching", False) or not manager.epochs:
        return
    t0 = time.monotonic()
    # Keep the leases valid while draining and tell the others: they stop counting this replica
    # in their share and poll fast for the leases it is about to hand over.
    async with asyncio.timeout(3):
        async with session_scope(manager.state.sessionmaker) as session:
            ids, epochs = manager._renewal(None)
            lost = await manager.store.renew(session, manager.replica_id, ids, epochs, manager.ttl)
            await registry.heartbeat(session, manager.replica_id, registry.DRAINING)
    for cid in lost:
        manager._drop(cid)
    manager.deadlines = dict.fromkeys(manager.epochs, t0 + manager.ttl - manager.margin)
    until = min(t0 + DRAIN_MAX_S, t0 + manager.ttl - manager.margin - 1.0)
    # The others notice on their next tick (one poll); probing goes on meanwhile.
    await asyncio.sleep(min(manager.poll_interval + 0.1, max(0.0, until - time.monotonic())))
    due_in = scheduler.due_in(set(manager.epochs))
    later = {cid: d for cid, d in due_in.items() if d is None or d > HANDOVER_LEAD_S}
    soon = set(manager.epochs) - set(later)
    planned = time.monotonic() - t0
    if later:
        # Their checks stop, the running ones finish, and every result is written while the
        # leases are still held.
        await scheduler.finish_probes(set(later))
        await scheduler.flush()
        async with asyncio.timeout(3):
            async with session_scope(manager.state.sessionmaker) as session:
                await manager.store.release(session, manager.replica_id, set(later), later)
        manager.handed_over(set(later))
        scheduler.forget(set(later))  # the next holder probes them from now on
    if soon:
        scheduler.hand_over_after_probe(soon)  # its flush calls hand_over/handed_over
        while not soon <= manager._handed and time.monotonic() < until:
            manager._handed_event.clear()
            try:
                await asyncio.wait_for(
                    manager._handed_event.wait(), timeout=max(0.01, until - time.monotonic())
                )
            except TimeoutError:
                break
    log.info(
        "replica %s drained in %.2fs: %d lease(s) handed over at once with their due time "
        "(after %.2fs), %d right after their next probe, %d left",
        manager.replica_id,
        time.monotonic() - t0,
        len(later),
        planned,
        len(soon & manager._handed),
        len(manager.epochs),
    )
