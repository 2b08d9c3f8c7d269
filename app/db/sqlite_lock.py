"""SQLite mode is single-replica: an exclusive lock file next to the database, held for the life of
the process, refuses a second guard on the same file with a clear message.

`fcntl.flock` locks belong to an open file description, so two opens in one process conflict too
(unlike POSIX `fcntl` record locks), and the kernel drops the lock when the process dies (kill -9).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from sqlalchemy.engine import make_url

from app.core.errors import ConfigurationError


def sqlite_lock_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    if parsed.database.startswith("file:") or parsed.query.get("mode") == "memory":
        return None
    return Path(parsed.database).expanduser().resolve().with_name(Path(parsed.database).name + ".lock")


class SqliteLock:
    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"process {holder}" if holder else "another process"
            raise ConfigurationError(
                f"the SQLite database {self.path.with_suffix('')} is already in use by {who} (lock file "
                f"{self.path}); SQLite mode runs a single replica — stop the other guard, or use Postgres "
                "(PIPELINE_DATABASE_URL=postgresql+asyncpg://...) to run several replicas"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the description releases the flock
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        raw = os.pread(fd, 32, 0).decode().strip()
        return int(raw) if raw.isdigit() else None
    except (OSError, ValueError):
        return None


def acquire_sqlite_lock(url: str) -> SqliteLock | None:
    path = sqlite_lock_path(url)
    if path is None:
        return None
    lock = SqliteLock(path)
    lock.acquire()
    return lock
