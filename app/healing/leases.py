"""An attempt's owner holds it with a lease: a deadline on the database clock, renewed while the
action runs and while its outcome is being recorded. Past it, the reconciler (``reconcile.py``)
takes over, whoever the owner was.

Also here: what identifies a command's process group, so a reconciler on the same machine kills
what a dead guard left running — and only if the group's leader is still that very command (a pid
is reused; its start time since boot, with the boot's id, is not).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models.healing import AttemptState, HealingAttempt
from app.db.session import session_scope, write_briefly
from app.db.types import utcnow

if TYPE_CHECKING:
    from app.platform.core import Core

log = logging.getLogger("pipeline_guard.healing")


async def database_now(session: AsyncSession) -> datetime:
    """The clock every replica compares leases with. SQLite is one process on one machine: its clock."""
    if session.get_bind().dialect.name == "postgresql":
        return (await session.execute(select(func.now()))).scalar_one()
    return utcnow()


def database_clock(session: AsyncSession) -> Any:
    """`database_now` as a value to write, without a round trip: ``now()`` on Postgres, evaluated by
    the statement that writes it."""
    if session.get_bind().dialect.name == "postgresql":
        return func.now()
    return utcnow()


# -- process groups ---------------------------------------------------------------------------------


@cache
def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()
    except OSError:
        return "unknown-boot"


def process_identity(pid: int) -> str | None:
    """``"<boot id>:<start time in clock ticks>"`` of a live process, or None (gone, or no /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its closing one.
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 20 or fields[0] == "Z":
        return None
    return f"{_boot_id()}:{fields[19]}"


def kill_group_if_same(pgid: int, identity: str | None, grace_s: float = 1.0) -> bool:
    """SIGTERM then SIGKILL the group ``pgid`` if its leader still is the process ``identity`` named.
    Returns whether a signal was sent. Blocking for at most ``grace_s`` (call it off the event loop)."""
    import time

    if not identity or process_identity(pgid) != identity:
        return False
    try:
        if os.getpgid(pgid) != pgid:
            return False
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return False
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and process_identity(pgid) == identity:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    return True


# -- keeping a lease --------------------------------------------------------------------------------


class LeaseKeeper:
    """Renews one attempt's lease every third of its length until stopped, and writes the command's
    process group as soon as it is known (again on each renewal, in case a write was lost)."""

    def __init__(self, state: Core, attempt_id: int, owner: str, lease_s: float) -> None:
        self.state = state
        self.attempt_id = attempt_id
        self.owner = owner
        self.lease_s = lease_s
        self.pgid: int | None = None
        self.process_start: str | None = None
        self._written_pgid: int | None = None
        self._task: asyncio.Task | None = None
        self._poke = asyncio.Event()

    def start(self) -> LeaseKeeper:
        self._task = asyncio.create_task(self._run(), name=f"healing:lease:{self.attempt_id}")
        return self

    def process_started(self, pid: int) -> None:
        """Called by the command runner right after the spawn (start_new_session: pgid == pid)."""
        self.pgid, self.process_start = pid, process_identity(pid)
        self._poke.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def renew(self) -> bool:
        async with session_scope(self.state.sessionmaker) as session:
            await write_briefly(session)
            now = await database_now(session)
            values: dict = {"lease_until": now + timedelta(seconds=self.lease_s)}
            if self.pgid is not None:
                values.update(pgid=self.pgid, process_start=self.process_start)
            result = await session.execute(
                update(HealingAttempt)
                .where(
                    HealingAttempt.id == self.attempt_id,
                    HealingAttempt.state == AttemptState.RUNNING,
                    HealingAttempt.owner == self.owner,
                )
                .values(**values)
            )
        self._written_pgid = self.pgid
        return cast("CursorResult[Any]", result).rowcount == 1  # a DML statement's result is a CursorResult

    async def _run(self) -> None:
        interval = max(0.2, self.lease_s / 3)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), timeout=interval)
            self._poke.clear()
            try:
                await self.renew()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the database may be away for a moment: try again
                log.warning(
                    "healing: could not renew the lease of attempt %s: %s",
                    self.attempt_id,
                    type(exc).__name__,
                )
