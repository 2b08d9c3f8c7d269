"""A real guard (`python -m app serve`, SQLite) killed -9 while its restart command runs: the command's
process group is recorded on the attempt, survives the guard (reparented), and is killed when the
next guard's reconciler settles the attempt — only because it still is that very command."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from app.healing.leases import kill_group_if_same, process_identity
from tests.conftest import TEST_SECRET, make_settings, running_guard
from tests.healing.conftest import wait_until
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable

pytestmark = pytest.mark.faults

RESTART = (
    "import os, subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
    "open(sys.argv[1] + '.tmp', 'w').write(f'{os.getpid()} {child.pid}')\n"
    "os.replace(sys.argv[1] + '.tmp', sys.argv[1])\n"
    "time.sleep(120)\n"
)


def _alive(pid: int) -> bool:
    return process_identity(pid) is not None  # gone, or a zombie waiting to be reaped


def _running_attempt(db: Path):
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT id, pgid, process_start FROM healing_attempts WHERE state = 'running' "
            "AND pgid IS NOT NULL"
        ).fetchone()


def _only_healing(rt):
    from app.healing.loop import HealingLoop

    return [HealingLoop(rt.core, rt.healing.engine)]


async def test_guard_killed_mid_command_then_its_process_group_is_killed(tmp_path, closed_port):
    db = tmp_path / "guard.db"
    pids_file = tmp_path / "pids"
    config = {
        "pipeline": {"monitoring": {"interval": "0.5s", "failure_threshold": 1, "jitter": 0}},
        "healing": {"command_actions_enabled": True, "attempt_lease": 2},
        "security": {"rate_limiting": {"enabled": False}},
        "components": [
            {
                "name": "svc",
                "check": {"kind": "tcp", "host": "127.0.0.1", "port": closed_port, "interval": "0.5s"},
                "recovery": {
                    "strategies": [
                        {"kind": "restart", "argv": [PY, "-c", RESTART, str(pids_file)], "timeout": 300}
                    ],
                    "backoff_initial": "1h",
                },
            }
        ],
    }
    (tmp_path / "guard.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(
        {
            "PIPELINE_ENV": "test",
            "PIPELINE_DATABASE_URL": f"sqlite+aiosqlite:///{db}",
            "PIPELINE_SECRET_KEY": TEST_SECRET,
            "PIPELINE_DATA_DIR": str(tmp_path / "var"),
        }
    )
    guard = _serve(tmp_path, env)
    leader = child = None
    try:
        await wait_until(
            lambda: pids_file.exists() and _running_attempt(db) is not None, timeout=90, interval=0.1
        )
        leader, child = map(int, pids_file.read_text().split())
        attempt_id, pgid, identity = _running_attempt(db)
        assert pgid == leader and os.getpgid(child) == pgid and identity == process_identity(leader)
        os.kill(guard.pid, signal.SIGKILL)
        guard.wait(timeout=10)
        await asyncio.sleep(0.5)
        assert _alive(leader) and _alive(child)  # the orphans a dead guard leaves

        settings = make_settings(
            f"sqlite+aiosqlite:///{db}",
            tmp_path,
            healing={"command_actions_enabled": True, "attempt_lease": 2},
        )
        async with running_guard(settings, build_services=_only_healing):
            await wait_until(lambda: not _alive(leader) and not _alive(child), timeout=30, interval=0.1)
        with sqlite3.connect(db) as conn:
            state, detail = conn.execute(
                "SELECT state, detail FROM healing_attempts WHERE id = ?", (attempt_id,)
            ).fetchone()
        assert state == "interrupted" and f"process group {pgid}" in detail and "killed" in detail
    finally:
        if guard.poll() is None:
            guard.kill()
            guard.wait()
        if leader is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(leader, signal.SIGKILL)


def test_a_reused_pid_is_never_killed(tmp_path):
    """The recorded identity no longer matches (the pid now belongs to another process): no signal."""
    proc = subprocess.Popen([PY, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        identity = process_identity(proc.pid)
        assert identity is not None
        boot, start = identity.rsplit(":", 1)
        assert kill_group_if_same(proc.pid, f"{boot}:{int(start) + 1}") is False
        assert proc.poll() is None
        assert kill_group_if_same(proc.pid, identity) is True
        assert proc.wait(timeout=10) < 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _serve(tmp_path: Path, env: dict[str, str]) -> subprocess.Popen:
    with open(tmp_path / "guard.log", "wb") as log:
        return subprocess.Popen(
            [
                PY,
                "-m",
                "app",
                "serve",
                "--config",
                str(tmp_path / "guard.yaml"),
                "--host",
                "127.0.0.1",
                "--port",
                str(free_port()),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
