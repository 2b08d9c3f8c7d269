"""SQLite's writers of one process: handed the write lock in order, the reaction's writes first.

SQLite has one write lock. A writer that finds it held waits in SQLite's busy handler, which SLEEPS
between retries (1, 2, 5, 10, ... up to 100 ms): it may wake up to 100 ms after the lock was freed,
and writers are not served in any order. Within one process the engine's connections take a
`WriteGate` instead, right before the statement that would take SQLite's write lock (INSERT, UPDATE,
DELETE, REPLACE, BEGIN IMMEDIATE/EXCLUSIVE, DDL), and give it back as soon as the connection is out
of its transaction (commit, rollback, close). Both happen on the connection's own thread (aiosqlite
runs every call of a connection on one thread): the committing thread hands the gate to the next
waiting thread, which runs its statement at once. Nobody polls, and the event loop is not on the
way: a busy loop (a flush's CPU work, a collection) does not leave the lock idle.

Two classes of writers, each served in the order it came:
- the reaction's (``reaction_writes()``): the result flush that writes a status change (its commit
  hands the incident to healing) and healing's decision on that hand-over (claim, acting marker);
- everyone else (routine flushes, lease ticks, compaction, the periodic pass, requests).
A free gate goes to the first reaction writer waiting, unless `URGENT_IN_A_ROW` reaction writers in
a row were let in while a routine one waited: then to the first routine writer. So routine writers
always progress, whatever the stream of reactions.

- Reads never take it (a SELECT, a deferred BEGIN, a SAVEPOINT): like SQLite's WAL readers, they run
  beside the writer.
- A cancelled statement still runs on the connection's thread (aiosqlite cannot take it back), and
  the gate is given back there when that transaction ends (its rollback, its close): never to a
  second writer while SQLite's lock may still be held by the first.
- The wait is bounded by the same timeout as SQLite's busy handler and ends with the same error
  (``sqlite3.OperationalError: database is locked``): a task that holds a write transaction and
  opens another writer in a nested session times out exactly where SQLite alone would have.
- Other processes (the CLI, a migration) do not share the gate: between processes SQLite's own lock
  and busy handler still decide. The gate is an ordering on top of SQLite's lock, never a
  replacement for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import re
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

import aiosqlite

# Reaction writers let in one after another while a routine writer waits, before that one goes.
URGENT_IN_A_ROW = 4

# The statements that take SQLite's write lock (what the driver begins a transaction for, and the
# explicit ways to take it). A WITH is a write when it ends in one.
_WRITES = re.compile(
    r"""\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*
        (?:INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER|BEGIN\s+(?:IMMEDIATE|EXCLUSIVE)
          |WITH\b.*\b(?:INSERT|UPDATE|DELETE|REPLACE)\b)""",
    re.IGNORECASE | re.VERBOSE | re.DOTALL,
)


class _Reaction:
    """One task's reaction. With `keep`, the gates it takes stay its own across its transactions
    until the block ends (a decision's claim and acting marker: no writer in between)."""

    __slots__ = ("gates", "keep", "task")

    def __init__(self, task: asyncio.Task[Any] | None, keep: bool) -> None:
        self.task = task
        self.keep = keep
        self.gates: set[WriteGate] = set()


# The reaction of the task running (set by `reaction_writes`). A task started inside copies the
# context, but it is another task: its writes stay routine (a lease renewal, a notification).
_reaction: contextvars.ContextVar[_Reaction | None] = contextvars.ContextVar("reaction_writes", default=None)


def takes_write_lock(statement: str) -> bool:
    return _WRITES.match(statement) is not None


@contextlib.contextmanager
def reaction_writes(*, keep: bool = False) -> Iterator[None]:
    """The writes this task makes inside go before routine writers at a SQLite engine's write gate
    (nothing changes elsewhere): the flush of a status change, the decision on its hand-over.
    `keep`: a gate taken inside stays with this task, across its commits, until the block ends —
    only for a block that never waits for another task's write (that one would wait for the gate)."""
    reaction = _Reaction(asyncio.current_task(), keep)
    token = _reaction.set(reaction)
    try:
        yield
    finally:
        _reaction.reset(token)
        for gate in reaction.gates:
            gate.release(reaction)


def _current_reaction() -> _Reaction | None:
    reaction = _reaction.get()
    return reaction if reaction is not None and reaction.task is asyncio.current_task() else None


def in_reaction() -> bool:
    return _current_reaction() is not None


class _Waiter:
    __slots__ = ("granted", "holder", "woken")

    def __init__(self, holder: object) -> None:
        self.holder = holder
        self.granted = False
        self.woken = threading.Event()


class WriteGate:
    """One engine's writers: held by at most one connection, from the statement that takes SQLite's
    write lock to the end of its transaction; handed on to the next waiter the moment it is free.
    Taken and given back on the connections' threads (thread-safe)."""

    def __init__(self, timeout_s: float, *, urgent_in_a_row: int = URGENT_IN_A_ROW) -> None:
        self.timeout_s = timeout_s
        self.urgent_in_a_row = urgent_in_a_row
        self._mutex = threading.Lock()
        self._holder: object | None = None
        self._urgent: deque[_Waiter] = deque()
        self._routine: deque[_Waiter] = deque()
        self._in_a_row = 0  # reaction writers let in in a row while a routine writer waited
        # Observability (tests, benches): writers that found the gate taken and queued, by class, and
        # routine writers let in ahead of waiting reaction writers (the bound above).
        self.waits = 0
        self.urgent_waits = 0
        self.routine_turns = 0

    @property
    def holder(self) -> object | None:
        return self._holder

    @property
    def held(self) -> bool:
        return self._holder is not None

    @property
    def queued(self) -> int:
        with self._mutex:
            return len(self._urgent) + len(self._routine)

    def acquire(self, holder: object, *, urgent: bool) -> None:
        """Blocks the calling (connection's) thread until `holder` holds the gate, waiting in
        `urgent`'s class; SQLite's "database is locked" after the timeout."""
        with self._mutex:
            if self._holder is None:
                self._holder = holder
                return
            waiter = _Waiter(holder)
            (self._urgent if urgent else self._routine).append(waiter)
            self.waits += 1
            if urgent:
                self.urgent_waits += 1
        if waiter.woken.wait(self.timeout_s):
            return
        with self._mutex:
            if waiter.granted:  # handed over just as the wait ran out
                return
            (self._urgent if urgent else self._routine).remove(waiter)
        raise sqlite3.OperationalError("database is locked")

    def release(self, holder: object) -> None:
        """Given back by `holder`: the next waiter holds it now (or nobody, and it is free)."""
        with self._mutex:
            if self._holder is not holder:
                return
            urgent = self._urgent[0] if self._urgent else None
            routine = self._routine[0] if self._routine else None
            if urgent is not None and (routine is None or self._in_a_row < self.urgent_in_a_row):
                self._urgent.popleft()
                self._in_a_row = self._in_a_row + 1 if routine is not None else 0
                nxt: _Waiter | None = urgent
            elif routine is not None:
                self._routine.popleft()
                if urgent is not None:
                    self.routine_turns += 1
                self._in_a_row = 0
                nxt = routine
            else:
                nxt = None
            if nxt is None:
                self._holder = None
                return
            self._holder = nxt.holder
            nxt.granted = True
        nxt.woken.set()


class GatedConnection(aiosqlite.Connection):
    """aiosqlite's connection (every call goes through `_execute`, onto the connection's thread), with
    the statements that take the write lock queued on the engine's `WriteGate` first, on that
    thread, and the gate given back there once the connection is out of its transaction."""

    def __init__(self, connector: Callable[[], sqlite3.Connection], gate: WriteGate) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._thread.daemon = True  # as SQLAlchemy's dialect does: never keeps the process alive
        self._gate = gate

    async def _execute(self, fn, *args, **kwargs):
        writes = bool(args) and isinstance(args[0], str) and takes_write_lock(args[0])
        # Which class it waits in, and who holds the gate (this connection, or a reaction that keeps
        # it), are the calling task's: read here, on the event loop.
        reaction = _current_reaction() if writes else None
        return await super()._execute(self._gated, fn, writes, reaction, *args, **kwargs)

    def _gated(self, fn, writes: bool, reaction: _Reaction | None, *args, **kwargs):
        """On the connection's thread: the gate before a write, given back when the transaction ended
        (by the reaction's block instead, when it keeps it)."""
        gate = self._gate
        kept = reaction is not None and reaction.keep
        if writes:
            holder: object = reaction if kept else self
            if gate.holder is not holder and gate.holder is not self:
                gate.acquire(holder, urgent=reaction is not None)
                if reaction is not None and reaction.keep:
                    reaction.gates.add(gate)
        try:
            return fn(*args, **kwargs)
        finally:
            if gate.holder is self and not self._in_transaction():
                gate.release(self)

    def _in_transaction(self) -> bool:
        try:
            return self._connection is not None and self._connection.in_transaction
        except sqlite3.Error:  # closed
            return False

    def stop(self) -> asyncio.Future | None:
        # Closed or collected while in a write transaction (SQLite rolls it back): the gate is given
        # back on the connection's thread, after what is queued there and before it stops.
        self._tx.put_nowait((None, partial(self._gate.release, self)))
        return super().stop()


def gated_connector(database_args: tuple[Sequence[Any], dict[str, Any]], gate: WriteGate):
    """The engine's `async_creator`: a new gated connection with the dialect's connect arguments."""
    cargs, cparams = database_args

    async def connect() -> aiosqlite.Connection:
        return await GatedConnection(partial(sqlite3.connect, *cargs, **cparams), gate)

    return connect
