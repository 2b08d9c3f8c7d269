from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from app.outbound.process import CommandError, build_env, run_command


async def test_true_and_false():
    ok = await run_command(["true"], timeout=5)
    assert ok.exit_code == 0 and not ok.timed_out and not ok.truncated
    bad = await run_command(["false"], timeout=5)
    assert bad.exit_code == 1 and not bad.timed_out


async def test_stdout_and_stderr_captured():
    result = await run_command(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=5)
    assert result.exit_code == 3
    assert result.stdout == "out\n" and result.stderr == "err\n"


async def test_timeout_kills_whole_group_including_grandchildren(proc_tools):
    pid_alive, live_group_members = proc_tools
    started = time.monotonic()
    result = await run_command(["sh", "-c", "sleep 30 & echo $$ $!; sleep 30"], timeout=0.5, kill_grace_s=0.5)
    elapsed = time.monotonic() - started
    assert result.timed_out and result.exit_code is None
    assert elapsed < 5
    shell_pid, background_pid = (int(x) for x in result.stdout.split())
    assert not pid_alive(background_pid)
    assert live_group_members(shell_pid) == []


async def test_sigterm_ignoring_child_is_killed(proc_tools):
    pid_alive, _ = proc_tools
    script = (
        "import signal,time,os; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print(os.getpid(), flush=True); time.sleep(30)"
    )
    result = await run_command([sys.executable, "-c", script], timeout=0.5, kill_grace_s=0.3)
    assert result.timed_out
    assert not pid_alive(int(result.stdout.split()[0]))


async def test_fifty_megabytes_are_drained_but_not_kept():
    started = time.monotonic()
    result = await run_command(
        [sys.executable, "-c", "import sys; sys.stdout.write('x' * 50_000_000)"],
        timeout=30,
        max_output_bytes=4096,
    )
    assert result.exit_code == 0 and not result.timed_out
    assert result.truncated
    assert len(result.stdout) < 4096 + 600
    assert "bytes omitted" in result.stdout
    assert time.monotonic() - started < 25


async def test_missing_executable_is_a_clean_error():
    with pytest.raises(CommandError, match="executable not found: 'no-such-binary-xyz'"):
        await run_command(["no-such-binary-xyz"], timeout=1)
    with pytest.raises(CommandError, match="working directory does not exist"):
        await run_command(["true"], timeout=1, cwd="/nonexistent/dir")
    with pytest.raises(CommandError, match="non-empty list"):
        await run_command([], timeout=1)


async def test_env_is_minimal_by_default(monkeypatch):
    monkeypatch.setenv("PIPELINE_ENCRYPTION_KEY", "do-not-leak")
    result = await run_command(["env"], timeout=5)
    assert "do-not-leak" not in result.stdout
    assert "PATH=" in result.stdout


def test_build_env():
    source = {"PATH": "/usr/bin", "HOME": "/root", "SECRET": "x", "LANG": "C.UTF-8"}
    env = build_env(["LANG", "MISSING"], {"EXTRA": "1"}, source=source)
    assert env == {"PATH": "/usr/bin", "LANG": "C.UTF-8", "EXTRA": "1"}
    with pytest.raises(ValueError):
        build_env([], {"BAD=NAME": "x"}, source=source)


async def test_background_daemon_survives_a_normal_exit(proc_tools):
    # A restart command may start a daemon that keeps our pipe open: we stop reading after a short
    # grace instead of waiting for it or killing it.
    pid_alive, _ = proc_tools
    started = time.monotonic()
    result = await run_command(["sh", "-c", "sleep 20 & echo $!; exit 0"], timeout=10)
    assert result.exit_code == 0 and not result.timed_out
    assert time.monotonic() - started < 5
    daemon = int(result.stdout.split()[0])
    try:
        assert pid_alive(daemon)
    finally:
        os.kill(daemon, signal.SIGKILL)


async def test_a_command_that_exited_while_the_guard_was_blocked_did_not_time_out():
    """The command finishes in 50 ms; the guard's loop is blocked (time.sleep on it) from its spawn
    until well past the 0.3 s timeout. Its exit is read, not reported as a timeout (nor killed)."""
    import asyncio

    blocked = False

    def block(pid: int) -> None:
        nonlocal blocked
        blocked = True
        asyncio.get_running_loop().call_soon(time.sleep, 1.0)

    result = await run_command(["sh", "-c", "sleep 0.05; exit 7"], timeout=0.3, on_start=block)
    assert blocked
    assert not result.timed_out and result.exit_code == 7
