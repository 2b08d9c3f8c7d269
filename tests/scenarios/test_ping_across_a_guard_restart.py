"""The ping command the README gives a batch job, run as written, reaches a guard that is restarting
(a deploy, a crash and its restart): the job finished while the guard was away, and its ping is stored
once the guard is back, instead of being lost (the job would be called late one period later, and
rerun)."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import time

import pytest

from tests.scenarios.harness import APP_ROOT, GuardProcess, guard_config

pytestmark = [pytest.mark.scenarios, pytest.mark.timeout(300)]

AWAY_S = 4.0  # the guard is away this long before it starts serving again (plus its start-up)


def documented_ping_command() -> list[str]:
    """The README's one-line ping command for a batch job, without its ``<url>``."""
    readme = (APP_ROOT / "README.md").read_text()
    match = re.search(r"A batch job then needs nothing but its URL: `(curl [^`]*) <url>`", readme)
    assert match, "the README no longer shows the batch job's ping command"
    return shlex.split(match.group(1))


def test_the_documented_ping_reaches_a_guard_that_is_restarting(guard_db):
    url, workdir = guard_db
    guard = GuardProcess(url, workdir / "ping-restart-guard", config=guard_config())
    try:
        guard.start()
        check = {"kind": "heartbeat", "period_s": 3600, "grace_s": 60}
        guard.post("/api/v1/components", {"name": "nightly", "check": check}, expect=201)
        token = guard.post("/api/v1/components/nightly/ping-token")["token"]
        assert guard.proc is not None
        guard.proc.send_signal(signal.SIGTERM)
        guard.proc.wait(timeout=60)
        job = subprocess.Popen(
            [*documented_ping_command(), f"{guard.base}/ping/{token}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(AWAY_S)
        guard.start(same_port=True)
        out, err = job.communicate(timeout=120)
        assert job.returncode == 0, f"curl exit {job.returncode}: {err}"
        assert '"status":"success"' in out.replace(" ", ""), out
        state = guard.get("/api/v1/components/nightly")["state"]
        assert state["last_ping_at"] is not None, state
    finally:
        guard.stop()
