"""The C heap of a long-running guard under glibc: two malloc arenas, and free pages handed back.

At 20,000 HTTP components on SQLite (`bench/probes.py`) the Python objects stop growing once the
fleet is loaded and has run its first checks, but glibc's heap kept growing for minutes: every
thread that allocates (each pooled SQLite connection has a driver thread, the default executor has
its own) gets an arena of its own, up to eight per core, and what a thread frees stays in its arena.
Sixteen arenas held 70 MB of free chunks after four minutes, and the process went past 500 MB.

- `limit_arenas` (the serve command, before any thread starts): at most `ARENAS` arenas, so memory one
  thread frees is reused by the others. Left alone when the operator chose (`MALLOC_ARENA_MAX`, or
  `arena_max` in `GLIBC_TUNABLES`).
- `trim_periodically` (the lifespan): every `TRIM_EVERY_S` the free pages inside the heap go back to
  the system (`malloc_trim`), in a worker thread: it takes the arenas' locks, not the event loop.

Elsewhere (musl, macOS) both do nothing: the functions are looked up in the running C library.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
from typing import Any

log = logging.getLogger("pipeline_guard")

M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)
ARENAS = 2
TRIM_EVERY_S = 10.0


def glibc() -> Any | None:
    """The process's C library when it has glibc's malloc controls, else None."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim")):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    return libc


def operator_chose_arenas(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    return "MALLOC_ARENA_MAX" in environ or "arena_max" in environ.get("GLIBC_TUNABLES", "")


def limit_arenas(arenas: int = ARENAS) -> bool:
    """At most ``arenas`` malloc arenas from now on (threads started later share them). True when set."""
    if operator_chose_arenas():
        return False
    libc = glibc()
    return libc is not None and libc.mallopt(M_ARENA_MAX, arenas) == 1


def trim() -> bool:
    """Hand the heap's free pages back to the system. True when some were."""
    libc = glibc()
    return libc is not None and libc.malloc_trim(0) == 1


async def trim_periodically() -> None:
    libc = glibc()
    if libc is None:
        return
    while True:
        await asyncio.sleep(TRIM_EVERY_S)
        try:
            await asyncio.to_thread(libc.malloc_trim, 0)
        except RuntimeError:  # the default executor is shutting down: so is the process
            return
