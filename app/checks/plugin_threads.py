"""The threads synchronous plugin code runs on (a plugin function, a plugin module's import).

Not the event loop's default executor: that one also resolves every host name the guard connects
to (probes, webhooks, notifications), and a plugin that hangs keeps its thread until it returns
(Python cannot stop a thread). A few hung plugins would otherwise starve every DNS lookup. Here each
call gets its own daemon thread (a hung one never holds up the guard's exit), and at most
``MAX_RUNNING`` run at once: past that a call is refused at once (the check is DOWN, saying how many
are still running) instead of queueing behind the hung ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

MAX_RUNNING = 16

_lock = threading.Lock()
_running = 0


class TooManyRunning(RuntimeError):
    pass


def running() -> int:
    return _running


def _settle(future: asyncio.Future, value: Any, error: BaseException | None) -> None:
    if future.done():  # the caller timed out or went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


async def call(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` on a thread of its own; raises ``TooManyRunning`` when full.
    Cancelling the caller (a timeout) leaves the thread to finish on its own, still counted."""
    global _running
    with _lock:
        if _running >= MAX_RUNNING:
            raise TooManyRunning(f"{_running} plugin calls are still running (hung?); not starting another")
        _running += 1
    loop = asyncio.get_running_loop()
    future: asyncio.Future = loop.create_future()

    def run() -> None:
        global _running
        value: Any = None
        error: BaseException | None = None
        try:
            value = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            error = exc
        finally:
            with _lock:
                _running -= 1
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_settle, future, value, error)

    threading.Thread(target=run, name="plugin-check", daemon=True).start()
    return await future
