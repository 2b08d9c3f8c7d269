"""The reconciler: runs on every periodic pass of the healing loop (not only at start) and settles
the attempts that outlived their owner — a guard killed -9, an action task that died, an outcome
that could not be recorded while the database was away.

A ``running`` attempt whose lease (``leases.py``) has run out (or whose owner ran on this machine and
is gone), and that no task of this process still drives:

- never reached its "acting" marker → its action never started: ``interrupted`` without back-off and
  without counting against ``max_attempts``; the incident is decided again at once (a retry). So is
  an automatic claim (committed with its marker) whose commit failed in this very process: the
  commit's answer was lost, so it may be stored, but no action was started for it;
- reached it → the action may have run: ``interrupted`` with back-off, never re-run blindly. If it
  ran a command on this machine whose process group is still that command, the group is killed.

Either way its concurrency slots are freed. The ``healing_in_progress`` gauge is set from the same
count ``/api/v1/healing/stats`` reports. When a component is deleted its budget, breaker, learned
statistics and incidents go too, so they neither linger in the stats nor apply to a new component
that takes its name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Collection
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select

from app.db.models.healing import (
    IN_FLIGHT,
    AttemptState,
    HealingAttempt,
    HealingBudget,
    HealingIncident,
    HealingStrategyStat,
)
from app.db.session import session_scope
from app.healing.leases import database_now, kill_group_if_same

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.healing.attempts import Attempts
    from app.platform.core import Core
    from app.platform.events import ComponentDeleted

log = logging.getLogger("pipeline_guard.healing")

# Rows claimed before attempts had leases: presumed abandoned this long after they started when
# their owner runs on another machine (on this one, a dead pid tells at once).
LEGACY_STALE_S = 3600.0 + 120.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Reconciler:
    def __init__(self, state: Core, attempts: Attempts, live: Collection[int]) -> None:
        self.state = state
        self.attempts = attempts
        self.owner = attempts.owner
        self.host = self.owner.rsplit(":", 1)[0]
        self.live = live  # attempt ids whose task runs in this process: their lease is renewed here
        self.killed_groups = 0

    def _owner_dead_here(self, row: HealingAttempt) -> bool:
        """The owner ran on this machine and its process is gone: no need to wait for the lease."""
        owner_host, _, pid = (row.owner or "").rpartition(":")
        return (
            owner_host == self.host and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid))
        )

    def _outlived(self, row: HealingAttempt, now) -> bool:
        if row.id in self.live:
            return False  # our own task: it renews the lease as soon as the database answers
        if self._owner_dead_here(row):
            return True
        if row.lease_until is not None:
            return row.lease_until < now
        started = row.started_at or row.created_at  # claimed before attempts had leases
        return (now - started).total_seconds() > LEGACY_STALE_S

    async def run(self) -> int:
        """One pass. Returns how many attempts it settled."""
        settled = 0
        async with session_scope(self.state.sessionmaker) as session:
            now = await database_now(session)
            # Running attempts are few (bounded by the concurrency slots): all of them, checked here,
            # and only those to settle are locked (another replica's reconciler skips them meanwhile).
            rows = (
                (
                    await session.execute(
                        select(HealingAttempt).where(HealingAttempt.state == AttemptState.RUNNING)
                    )
                )
                .scalars()
                .all()
            )
            ids = [row.id for row in rows if self._outlived(row, now)]
            if ids:
                locked = (
                    (
                        await session.execute(
                            select(HealingAttempt)
                            .where(HealingAttempt.id.in_(ids), HealingAttempt.state == AttemptState.RUNNING)
                            .with_for_update(skip_locked=True)
                            .execution_options(populate_existing=True)
                        )
                    )
                    .scalars()
                    .all()
                )
                for row in locked:
                    if self._outlived(row, now):
                        await self._settle(session, row, now)
                        settled += 1
            await self.refresh_gauge(session)
        if settled:
            log.warning("healing: reconciled %d attempt(s) that outlived their owner", settled)
        return settled

    async def _settle(self, session: AsyncSession, row: HealingAttempt, now) -> None:
        who = row.owner or "an unknown owner"
        if row.id in self.attempts.never_started:  # its claim's commit failed here: no action started
            row.acting_at = None
        if row.acting_at is None:
            row.state = AttemptState.INTERRUPTED
            row.finished_at = now
            row.slot = row.group_slot = None
            row.lease_until = None
            row.decision = {**(row.decision or {}), "acted": False}
            row.detail = (
                f"interrupted before its action started ({who} stopped holding it); "
                "the incident is decided again at once"
            )
            self.attempts.count(row, "interrupted")
            await session.flush()
            return
        killed = False
        owner_host = (row.owner or "").rpartition(":")[0]
        if row.pgid is not None and owner_host == self.host:
            killed = await asyncio.to_thread(kill_group_if_same, row.pgid, row.process_start)
            self.killed_groups += int(killed)
        what = (
            f"; its command's process group {row.pgid} was still running and has been killed"
            if killed
            else ""
        )
        row.lease_until = None
        await self.attempts.finish_failed(
            session,
            row,
            now,
            AttemptState.INTERRUPTED,
            f"interrupted: {who} stopped holding the attempt while its action ran{what}; not re-run, "
            "the incident will be decided afresh after the back-off",
            count_stats=False,
        )

    async def refresh_gauge(self, session: AsyncSession) -> int:
        count = (
            await session.execute(
                select(func.count()).select_from(HealingAttempt).where(HealingAttempt.state.in_([*IN_FLIGHT]))
            )
        ).scalar_one()
        self.state.metrics.healing_in_progress.set(count)
        return count

    # -- a component deleted ------------------------------------------------------------------------

    async def on_component_deleted(self, evt: ComponentDeleted, session: AsyncSession) -> None:
        name = evt.component
        await session.execute(delete(HealingBudget).where(HealingBudget.component == name))
        await session.execute(delete(HealingStrategyStat).where(HealingStrategyStat.component == name))
        await session.execute(delete(HealingIncident).where(HealingIncident.component == name))
        pending = (
            (
                await session.execute(
                    select(HealingAttempt).where(
                        HealingAttempt.component == name,
                        HealingAttempt.state == AttemptState.PENDING_APPROVAL,
                    )
                )
            )
            .scalars()
            .all()
        )
        for row in pending:
            row.state = AttemptState.EXPIRED
            row.finished_at = evt.at
            row.detail = "component deleted before approval"
        await session.flush()
        with contextlib.suppress(KeyError):
            self.state.metrics.circuit_open.remove(name)
