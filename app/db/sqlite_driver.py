"""SQLite statements in one trip to the driver's thread.

aiosqlite runs every call on the connection's own thread and hands the result back to the event
loop: SQLAlchemy's adapter makes four such trips per statement (open a cursor, execute, fetch the
rows, close the cursor), and each trip waits for the event loop to come round. Inside a write
transaction SQLite's one write lock is held across all of them, so on a busy loop a transaction of
twenty statements held the lock for eighty loop rounds while every other writer (a flush that opens
an incident, the healing claim that follows it) slept in the busy handler.

Here a statement is one trip: the cursor is opened, executed, read and closed on the driver's
thread, and the rows, description, rowcount and last row id come back together. Server-side
cursors (streamed results) keep SQLAlchemy's own adapter. Commit and rollback were already one
trip each.

A transaction that asked to write briefly (``app/db/session.py: write_briefly``) makes no trip at
all while it holds the write lock: it tries the lock once on the event loop's thread without
waiting (``BEGIN IMMEDIATE`` with the busy timeout at 0; when another writer has it, the statement
waits on the driver's thread as any other), and once it holds the lock its small statements run
right there, so the lock is held for the transaction's own work, not for one event loop round per
statement. A statement of many rows or parameters still goes to the driver's thread (the loop is not
blocked by a bulk write), and so do the commit (which may checkpoint the WAL, after the lock is given
back) and the rollback. The engine factory (``engine.py``) passes this module's DBAPI to the
aiosqlite dialect; nothing else changes (same driver, same connections, same pragmas).
"""

from __future__ import annotations

import collections
import sqlite3
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

Outcome = tuple[Any, list[Any] | None, int, int | None]

# A statement this large goes to the driver's thread even while the lock is held: the event loop is
# not blocked by a bulk write (a flush's results or component states, a batch of points).
INLINE_MAX_ROWS = 64  # executemany
INLINE_MAX_PARAMETERS = 512  # one statement
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def _small(parameters: Any, many: bool) -> bool:
    if parameters is None:
        return True
    try:
        size = len(parameters)
    except TypeError:
        return False
    return size <= (INLINE_MAX_ROWS if many else INLINE_MAX_PARAMETERS)


def _run(conn: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> Outcome:
    """On the driver's thread: the whole statement, its rows included."""
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else None
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A buffered cursor whose every statement is one trip to the driver's thread."""

    __slots__ = ("_description", "_rowcount", "_lastrowid")

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection):
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]  # no driver cursor is kept between statements
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]

    @property
    def arraysize(self) -> int:
        return 1

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        pass

    async def _trip(self, operation: Any, parameters: Any, many: bool) -> None:
        connection: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        adapt: OneTripConnection = self._adapt_connection  # type: ignore[assignment]
        async with adapt._execute_mutex:
            conn = connection._conn
            outcome = adapt.run_inline(conn, operation, parameters, many)
            if outcome is None:
                outcome = await connection._execute(_run, conn, operation, parameters, many)
                adapt.after_trip(conn, operation)
            description, rows, rowcount, lastrowid = outcome
        self._description, self._rowcount, self._lastrowid = description, rowcount, lastrowid
        self._rows = collections.deque(rows) if rows else collections.deque()

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        await self._trip(operation, parameters, False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        await self._trip(operation, seq_of_parameters, True)

    async def _async_soft_close(self) -> None:
        return  # nothing is open on the driver's side

    def close(self) -> None:
        self._rows.clear()

    def nextset(self) -> None:
        return None

    def setinputsizes(self, *_inputsizes: Any) -> None:
        return None


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ("_brief", "_locked", "_busy_ms", "_any_thread")
    _cursor_cls = OneTripCursor  # type: ignore[assignment]  # a subclass of the adapter's cursor

    def __init__(self, dbapi: Any, connection: Any, *, busy_ms: int, any_thread: bool) -> None:
        super().__init__(dbapi, connection)
        self._brief = False  # this transaction writes briefly (until its commit or rollback)
        self._locked = False  # this transaction holds the write lock (until its commit or rollback)
        self._busy_ms = busy_ms
        # The driver lets another thread use the connection (SQLAlchemy's choice for a file database;
        # not for :memory:, whose statements then all stay on the driver's thread).
        self._any_thread = any_thread

    def write_briefly(self) -> None:
        """This transaction's statements run on the event loop's thread while it holds the lock."""
        self._brief = self._any_thread

    def run_inline(
        self, conn: sqlite3.Connection, operation: str, parameters: Any, many: bool
    ) -> Outcome | None:
        """On the event loop's thread, a brief transaction's small statement once it holds the write
        lock, the lock taken here by its first write when it is free (never waited for here). None:
        the statement goes to the driver's thread."""
        if not self._brief or not _small(parameters, many):
            return None
        if not (self._locked and conn.in_transaction):
            head = operation.lstrip()[:15].upper()
            begins = head.startswith("BEGIN IMMEDIATE")
            if conn.in_transaction or not (begins or head.startswith(_WRITES)):
                return None  # a read, or a transaction begun without the lock: the lock is waited for there
            if not self._try_lock(conn):
                return None  # another writer has it: wait on the driver's thread, as every writer does
            if begins:
                return None, None, -1, None
        return _run(conn, operation, parameters, many)

    def _try_lock(self, conn: sqlite3.Connection) -> bool:
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return False
        finally:
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        self._locked = True
        return True

    def after_trip(self, conn: sqlite3.Connection, operation: str) -> None:
        """After a statement on the driver's thread: a write (or BEGIN IMMEDIATE) in a transaction
        holds the lock until the commit or rollback."""
        if not self._locked and conn.in_transaction:
            head = operation.lstrip()[:15].upper()
            self._locked = head.startswith(_WRITES) or head.startswith("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self._brief = self._locked = False
        super().commit()

    def rollback(self) -> None:
        self._brief = self._locked = False
        super().rollback()


class OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The aiosqlite DBAPI whose connections make one trip per statement."""

    def connect(self, *arg: Any, **kw: Any) -> OneTripConnection:
        creator_fn = kw.pop("async_creator_fn", None)
        if creator_fn:
            connection = creator_fn(*arg, **kw)
        else:
            connection = self.aiosqlite.connect(*arg, **kw)
            connection._thread.daemon = True  # as SQLAlchemy's adapter does: never holds the exit up
        return OneTripConnection(
            self,
            await_(connection),
            busy_ms=int(kw.get("timeout", 5.0) * 1000),
            any_thread=kw.get("check_same_thread", True) is False,
        )


# The adapter hooks this module overrides (SQLAlchemy 2.1's aiosqlite adapter). Another release may
# shape its adapter differently: then the engine keeps SQLAlchemy's own (four trips, same results).
_HOOKS = ("_execute_async", "_executemany_async", "_async_soft_close")


def one_trip_dbapi() -> OneTripDBAPI | None:
    """This module's DBAPI, or None when the installed SQLAlchemy's adapter lacks the hooks it needs."""
    if not all(callable(getattr(AsyncAdapt_aiosqlite_cursor, hook, None)) for hook in _HOOKS):
        return None
    if not hasattr(AsyncAdapt_aiosqlite_connection, "_cursor_cls"):
        return None
    return OneTripDBAPI(aiosqlite, sqlite3)
