"""Run an external command safely: argument list (never a shell), own process group, hard timeout
that kills the whole group, output drained fully but only a bounded amount kept.

Used by the `command` check and the `restart`/`command` healing strategy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from app.core.deadlines import lenient_timeout

# How much of the end of each stream we keep besides its head: the last lines of a failing command
# usually say why it failed, so they are worth a few hundred bytes even when the head is full.
TAIL_BYTES = 512
# Time a process group gets between SIGTERM and SIGKILL.
KILL_GRACE_S = 1.0
# After the main process has exited, how long we keep reading pipes that a background child may
# still hold open. A restart command may legitimately leave a daemon behind, so we stop reading
# instead of killing it.
PIPE_DRAIN_GRACE_S = 1.0
# Upper bound on waiting for the group leader to be reaped after SIGKILL (a process stuck in
# uninterruptible I/O cannot die sooner; we report and move on rather than hang).
REAP_TIMEOUT_S = 5.0
_READ_CHUNK = 65536


class CommandError(Exception):
    """The command could not be started (missing executable, bad cwd, permission denied)."""


@dataclass(frozen=True, slots=True)
class CommandResult:
    exit_code: int | None  # None when killed on timeout before it exited; negative = killed by signal
    timed_out: bool
    stdout: str
    stderr: str
    truncated: bool
    duration_s: float


class _BoundedCapture:
    """Keeps the first `head_limit` bytes and the last `tail_limit` bytes of a stream."""

    def __init__(self, head_limit: int, tail_limit: int) -> None:
        self.head_limit = head_limit
        self.tail_limit = tail_limit
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk and self.tail_limit:
            self.tail += chunk
            if len(self.tail) > self.tail_limit:
                del self.tail[: len(self.tail) - self.tail_limit]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.head) + len(self.tail)

    def text(self) -> str:
        head = self.head.decode("utf-8", errors="replace")
        if not self.tail:
            return head
        tail = self.tail.decode("utf-8", errors="replace")
        if self.truncated:
            omitted = self.total - len(self.head) - len(self.tail)
            return f"{head}\n…[{omitted} bytes omitted]…\n{tail}"
        return head + tail


def build_env(
    allowed: Iterable[str] = (),
    extra: Mapping[str, str] | None = None,
    *,
    source: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment for a child process: PATH plus only the allowlisted variables of the guard's own
    environment, then `extra`. The guard's environment holds the database URL and the encryption
    key, so nothing passes through unless an admin named it."""
    source = os.environ if source is None else source
    env: dict[str, str] = {"PATH": source.get("PATH", os.defpath)}
    for name in allowed:
        if name in source:
            env[name] = source[name]
    for name, value in (extra or {}).items():
        if not isinstance(name, str) or not name or "=" in name or "\0" in name:
            raise ValueError(f"invalid environment variable name: {name!r}")
        if not isinstance(value, str) or "\0" in value:
            raise ValueError(f"environment variable {name}: value must be a string without NUL")
        env[name] = value
    return env


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    # ProcessLookupError: the group is already gone; PermissionError: the pid was reused by a
    # process we do not own (only possible once the whole group is gone), nothing to kill either.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _drain(stream: asyncio.StreamReader | None, capture: _BoundedCapture) -> None:
    if stream is None:
        return
    while chunk := await stream.read(_READ_CHUNK):
        capture.feed(chunk)


async def _wait_exit(proc: asyncio.subprocess.Process) -> int:
    # Not proc.wait(): on Python 3.11 it only returns once every pipe is closed, so a background
    # child holding stdout would make an exited command look hung. returncode is set as soon as
    # the child is reaped.
    delay = 0.002
    while proc.returncode is None:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)
    return proc.returncode


def _start_error(argv: list[str], cwd: str | None, exc: OSError) -> CommandError:
    if isinstance(exc, FileNotFoundError):
        if cwd is not None and not os.path.isdir(cwd):
            return CommandError(f"working directory does not exist: {cwd}")
        return CommandError(f"executable not found: {argv[0]!r}")
    if isinstance(exc, PermissionError):
        return CommandError(f"permission denied: {argv[0]!r}")
    return CommandError(f"cannot start {argv[0]!r}: {exc.strerror or exc}")


async def run_command(
    argv: list[str],
    *,
    timeout: float,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    max_output_bytes: int = 8192,
    kill_grace_s: float = KILL_GRACE_S,
    on_start: Callable[[int], None] | None = None,
) -> CommandResult:
    """Run `argv` without a shell in its own process group.

    `env=None` gives the child `build_env()` (PATH only), *not* the guard's environment.
    On timeout the whole group gets SIGTERM, then SIGKILL after `kill_grace_s`, and is reaped.
    stdout/stderr are read concurrently until EOF so a chatty child never blocks on a full pipe;
    each keeps its first `max_output_bytes` plus the last TAIL_BYTES.
    Raises CommandError (with a one-line message) when the command cannot be started.
    `on_start(pid)` is called right after the spawn (the pid is also the group's id).
    """
    if not isinstance(argv, list | tuple) or not argv or not all(isinstance(a, str) for a in argv):
        raise CommandError("argv must be a non-empty list of strings")
    if timeout <= 0:
        raise CommandError("timeout must be positive")
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=build_env() if env is None else env,
            start_new_session=True,
        )
    except OSError as exc:
        raise _start_error(list(argv), cwd, exc) from None

    tail = min(TAIL_BYTES, max_output_bytes)
    out = _BoundedCapture(max_output_bytes, tail)
    err = _BoundedCapture(max_output_bytes, tail)
    readers = asyncio.gather(_drain(proc.stdout, out), _drain(proc.stderr, err))
    exited = asyncio.ensure_future(_wait_exit(proc))
    pgid = proc.pid  # start_new_session: the child leads a new group whose id is its pid
    if on_start is not None:
        try:
            on_start(pgid)
        except Exception:
            logging.getLogger(__name__).exception("on_start hook failed for pid %s", pgid)
    timed_out = False
    try:
        try:
            # Lenient: a command that exited while the guard itself could not run did not time out.
            async with lenient_timeout(timeout):
                await asyncio.shield(exited)
        except TimeoutError:
            timed_out = True
            _signal_group(pgid, signal.SIGTERM)
            await asyncio.wait({exited}, timeout=kill_grace_s)
            # SIGKILL even if the leader exited on SIGTERM: its children may have ignored it.
            _signal_group(pgid, signal.SIGKILL)
            await asyncio.wait({exited}, timeout=REAP_TIMEOUT_S)
        try:
            await asyncio.wait_for(asyncio.shield(readers), timeout=PIPE_DRAIN_GRACE_S)
        except TimeoutError:
            # A background child (a daemon a restart command launched, or one that escaped with
            # setsid) still holds a pipe. Stop reading; closing our ends frees the transport
            # (it does not signal an exited process).
            readers.cancel()
            transport = getattr(proc, "_transport", None)
            if transport is not None:
                transport.close()
    except BaseException:
        # Cancelled (e.g. the guard shuts down): never leave the group running.
        _signal_group(pgid, signal.SIGKILL)
        readers.cancel()
        exited.cancel()
        raise
    finally:
        exited.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await readers
    return CommandResult(
        exit_code=None if timed_out else proc.returncode,
        timed_out=timed_out,
        stdout=out.text(),
        stderr=err.text(),
        truncated=out.truncated or err.truncated,
        duration_s=time.monotonic() - started,
    )
