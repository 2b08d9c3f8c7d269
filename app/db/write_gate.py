"""SQLite's write lock handed over in order: the in-process writer gate.

SQLite has one write lock per database and hands it over by polling: a writer that finds it taken
sleeps in the busy handler with a growing back-off (1, 2, 5, 10 ... 100 ms), so it wakes up to 100 ms
after the lock was freed, and whoever polls first wins, not whoever came first. SQLite mode runs one
guard process (the lock file), so every writer of the guard is in this process: the gate is an
asyncio lock that a connection takes just before the statement that takes SQLite's write lock (its
first INSERT/UPDATE/DELETE/REPLACE, DDL, ``BEGIN IMMEDIATE``, or a SAVEPOINT that opens the
transaction) and gives back as soon as the driver's transaction has ended (commit, rollback, the
pool's reset or check-in, an invalidated or detached connection). The next writer starts the moment
the previous one committed: first come, first served, except that the writes of a reaction
(``reaction_writes()``: monitoring's flush of a status change, the healing decision on the incident
it handed over) go before routine writers, each kind in its order.

The gate is held while SQLite's lock is (from a first SAVEPOINT, a little earlier), so it adds no
deadlock the lock itself did not have: a connection already in a transaction never waits for it,
readers never take it (WAL). Waiting for it is bounded by the busy timeout; past that the statement
goes to SQLite ungated and the busy handler decides, as it always did for other processes (CLI
``db`` commands, migrations).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from collections import deque
from collections.abc import Iterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.util import await_only

log = logging.getLogger(__name__)
_GATES: weakref.WeakKeyDictionary[Engine, WriteGate] = weakref.WeakKeyDictionary()
_REACTION_TASKS: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()


@contextlib.contextmanager
def reaction_writes() -> Iterator[None]:
    """The writes this task makes inside are a reaction's: monitoring's flush of a result that
    changes a status, the healing decision on the incident it handed over, its claim and acting
    marker. They go before routine writers at the gate (flushes of steady results, periodic passes,
    deliveries), which keep their order among themselves. Tasks started inside are not reactions."""
    task = asyncio.current_task()
    if task is None or task in _REACTION_TASKS:
        yield
        return
    _REACTION_TASKS.add(task)
    try:
        yield
    finally:
        _REACTION_TASKS.discard(task)


# Leading keywords of the statements that take SQLite's write lock; and SAVEPOINT, which opens the
# transaction when it comes first (``begin_nested()`` around an insert): the write inside it would
# find the driver in a transaction already and go ungated.
_WRITES = (
    "INSERT",
    "UPDATE",
    "DELETE",
    "REPLACE",
    "CREATE",
    "DROP",
    "ALTER",
    "BEGIN IMMEDIATE",
    "SAVEPOINT",
)


def takes_write_lock(statement: str) -> bool:
    return statement.lstrip()[:16].upper().startswith(_WRITES)


def _in_transaction(dbapi_connection: Any) -> bool:
    """Whether the SQLite connection under SQLAlchemy's adapter is inside a transaction (for the
    SQLite driver, which begins one only before a write: whether it holds the write lock)."""
    try:
        return bool(dbapi_connection.driver_connection.in_transaction)
    except Exception:  # closed or being torn down: it holds nothing
        return False


class WriteGate:
    """A lock held by one DBAPI connection at a time, handed over first come, first served, except
    that a writer inside ``reaction_writes()`` goes before the ones that are not."""

    def __init__(self, wait_s: float):
        self._wait_s = wait_s
        self._held = False
        self._holder: Any = None
        self._first: deque[asyncio.Future[None]] = deque()  # reaction writers, in order
        self._rest: deque[asyncio.Future[None]] = deque()  # everyone else, in order
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self.bypassed = 0  # waits that ran out and went to SQLite ungated

    @property
    def holder(self) -> Any:
        return self._holder

    @property
    def held(self) -> bool:
        return self._held

    @property
    def queued(self) -> int:
        """Writers waiting for the gate."""
        return sum(not f.done() for f in self._first) + sum(not f.done() for f in self._rest)

    async def acquire(self, holder: Any) -> None:
        if self._held or self._first or self._rest:
            if not await self._wait():
                return
        else:
            self._held = True
        self._holder = holder
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()

    async def _wait(self) -> bool:
        """Queue; True once the gate was handed over, False when the wait ran out (ungated)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._first if asyncio.current_task() in _REACTION_TASKS else self._rest
        queue.append(waiter)
        try:
            async with asyncio.timeout(self._wait_s):
                await waiter
            return True
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self._hand_on()  # handed over just as this wait ended: pass it on
            else:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    queue.remove(waiter)
            if isinstance(exc, TimeoutError):
                self.bypassed += 1
                log.warning("SQLite writer gate not free after %.1f s; writing ungated", self._wait_s)
                return False
            raise

    def _hand_on(self) -> None:
        """The next waiter gets the gate (it stays held), or nobody is waiting and it is free."""
        for queue in (self._first, self._rest):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self._held = False

    def release(self, holder: Any) -> None:
        if holder is None or self._holder is not holder:
            return
        self._holder = None
        loop = self._loop
        if loop is None or self._thread == threading.get_ident():
            self._hand_on()
        elif not loop.is_closed():  # a connection cleaned up on another thread (garbage collection)
            loop.call_soon_threadsafe(self._hand_on)

    def release_if_idle(self, holder: Any) -> None:
        """Gives the gate back if ``holder`` has it and its transaction has ended."""
        if holder is not None and self._holder is holder and not _in_transaction(holder):
            self.release(holder)


def install_write_gate(engine: Engine, wait_s: float) -> WriteGate:
    """Puts the gate on every connection of ``engine`` (the sync engine under an AsyncEngine)."""
    gate = _GATES[engine] = WriteGate(wait_s)

    def before_cursor_execute(conn, _cursor, statement, _params, _context, _many) -> None:
        dbapi = conn.connection.dbapi_connection
        if gate.holder is dbapi or not takes_write_lock(statement) or _in_transaction(dbapi):
            return
        await_only(gate.acquire(dbapi))

    def after_cursor_execute(conn, _cursor, _statement, _params, _context, _many) -> None:
        gate.release_if_idle(conn.connection.dbapi_connection)  # DDL and other autocommit writes

    def reset(dbapi_connection, _record, _state) -> None:
        gate.release_if_idle(dbapi_connection)  # committed or rolled back before the check-in

    def gone(dbapi_connection, *_args) -> None:
        gate.release(dbapi_connection)

    event.listen(engine, "before_cursor_execute", before_cursor_execute)
    event.listen(engine, "after_cursor_execute", after_cursor_execute)
    event.listen(engine.pool, "reset", reset)
    for name in ("checkin", "invalidate", "soft_invalidate", "close", "close_detached", "detach"):
        event.listen(engine.pool, name, gone)
    return gate


def write_gate_of(engine: Engine) -> WriteGate | None:
    """The gate of ``engine`` (the sync engine under an AsyncEngine), None when it has none."""
    return _GATES.get(engine)
