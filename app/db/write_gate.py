"""SQLite's writers of one process queue in order instead of polling the file lock.

SQLite has one write lock. A writer that finds it held waits in SQLite's busy handler, which SLEEPS
between retries (1, 2, 5, 10, ... up to 100 ms): it may wake up to 100 ms after the lock was freed,
and writers are not served in order. Within one process the engine's connections take a
`WriteGate` instead — one FIFO lock per engine — right before the statement that would take
SQLite's write lock (INSERT, UPDATE, DELETE, REPLACE, BEGIN IMMEDIATE/EXCLUSIVE, DDL) and give it
back as soon as the connection is out of its transaction (commit, rollback, close). The next
writer then starts the moment the previous one committed.

- Reads never take it (a SELECT, a deferred BEGIN, a SAVEPOINT): like SQLite's WAL readers, they run
  beside the writer.
- The wait is bounded by the same timeout as SQLite's busy handler and ends with the same error
  (``sqlite3.OperationalError: database is locked``): a task that holds a write transaction and
  opens another writer in a nested session times out exactly where SQLite alone would have.
- Other processes (the CLI, a second guard on the same file) do not share the gate: between
  processes SQLite's own lock and busy handler still decide. The gate is an ordering on top of
  SQLite's lock, never a replacement for it.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import aiosqlite

# The statements that take SQLite's write lock (what the driver begins a transaction for, and the
# explicit ways to take it). A WITH is a write when it ends in one.
_WRITES = re.compile(
    r"""\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*
        (?:INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER|BEGIN\s+(?:IMMEDIATE|EXCLUSIVE)
          |WITH\b.*\b(?:INSERT|UPDATE|DELETE|REPLACE)\b)""",
    re.IGNORECASE | re.VERBOSE | re.DOTALL,
)


def takes_write_lock(statement: str) -> bool:
    return _WRITES.match(statement) is not None


class WriteGate:
    """One engine's FIFO of writers: held by at most one connection, from the statement that takes
    SQLite's write lock to the end of its transaction."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.waits = 0  # writers that found the gate held and queued (observability, tests)

    def _current(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._loop is not loop:  # an engine reused by another event loop
            self._lock, self._loop = asyncio.Lock(), loop
        return self._lock

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    @property
    def held(self) -> bool:
        return self._lock is not None and self._lock.locked()

    async def acquire(self) -> asyncio.Lock:
        lock = self._current()
        if lock.locked():
            self.waits += 1
        try:
            await asyncio.wait_for(lock.acquire(), self.timeout_s)
        except TimeoutError:
            raise sqlite3.OperationalError("database is locked") from None
        return lock


class GatedConnection(aiosqlite.Connection):
    """aiosqlite's connection (every call goes through `_execute`, onto the connection's thread), with
    the statements that take the write lock queued on the engine's `WriteGate` first."""

    def __init__(self, connector: Callable[[], sqlite3.Connection], gate: WriteGate) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._thread.daemon = True  # as SQLAlchemy's dialect does: never keeps the process alive
        self._gate = gate
        self._holding: asyncio.Lock | None = None

    async def _execute(self, fn, *args, **kwargs):
        if (
            self._holding is None
            and args
            and isinstance(args[0], str)
            and takes_write_lock(args[0])
            and self._connection is not None
        ):
            self._holding = await self._gate.acquire()
        try:
            result = await super()._execute(fn, *args, **kwargs)
        except asyncio.CancelledError:
            # The call may still run on the connection's thread: the gate stays taken until the
            # connection's transaction is over (its rollback, its close).
            raise
        except BaseException:
            self._release_after_transaction()
            raise
        self._release_after_transaction()
        return result

    def _release_after_transaction(self) -> None:
        if self._holding is not None and not self._in_transaction():
            self._release()

    def _in_transaction(self) -> bool:
        try:
            return self._connection is not None and self._connection.in_transaction
        except sqlite3.Error:  # closed
            return False

    def _release(self) -> None:
        holding, self._holding = self._holding, None
        if holding is None:
            return
        loop = self._gate.loop
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if loop is None or here is loop:
            _free(holding)
        elif not loop.is_closed():  # a connection collected on another thread
            loop.call_soon_threadsafe(_free, holding)

    def stop(self) -> asyncio.Future | None:
        # Closed or terminated while in a write transaction (SQLite rolls it back): the gate is free.
        self._release()
        return super().stop()


def _free(lock: asyncio.Lock) -> None:
    if lock.locked():
        lock.release()


def gated_connector(database_args: tuple[Sequence[Any], dict[str, Any]], gate: WriteGate):
    """The engine's `async_creator`: a new gated connection with the dialect's connect arguments."""
    cargs, cparams = database_args

    async def connect() -> aiosqlite.Connection:
        return await GatedConnection(partial(sqlite3.connect, *cargs, **cparams), gate)

    return connect
