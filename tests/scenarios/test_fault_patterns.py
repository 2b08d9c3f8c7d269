"""Fault patterns the other stories do not tell, each against its own real guard process:

- batch-kill9: a batch job's rerun pinged ``/start``, then the guard is killed with SIGKILL while it
  verifies that rerun and served again; the rerun then reports ``/fail``: the verification goes on
  after the restart (the rerun is judged on its own pings, nothing from before the action), the
  attempt fails on that ``/fail`` at once, within the policy's long grace, and the second rerun heals;
  exactly two reruns, never two runs at once, one incident.
- frozen: the target is stopped with SIGSTOP (the kernel still accepts connections, nobody answers)
  while its check's ``timeout`` was raised over the API past its interval: each probe is bounded by
  that timeout, the component goes critical and one restart (SIGKILL works on a stopped process)
  heals it; no second action, the attempt succeeded.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

import pytest

from tests.scenarios.harness import parse_time
from tests.scenarios.stories import now, tell_alone
from tests.scenarios.test_batch_rerun_stories import BatchStory
from tests.scenarios.test_heal_guard_faults import OwnGuardStory

pytestmark = [pytest.mark.scenarios, pytest.mark.timeout(300)]


class KilledDuringRerun(BatchStory, OwnGuardStory):
    name = job = "batch-kill9"
    PLAN = ("success", "fail", "start await:resumed fail", "sleep:1 success")
    GRACE_S = 60
    CHECK = {"max_runtime_s": 120}
    POLICY = {"grace_period": GRACE_S, "verify_timeout": 2 * GRACE_S}

    def play(self) -> None:
        failed = self.fail_once()
        self.wait(
            lambda: self.pinged(3, "start") is not None and self.states(self.job) == ["verifying"],
            "the rerun started and verified",
        )
        self.guard.kill9()
        self.guard.start(same_port=True)  # the job's ping URL stays the same
        (self.dir / "resumed").write_text("")
        self.wait(lambda: self.ended(4) and self.settled(self.job), "the second rerun to be verified")
        time.sleep(2)
        why = self.why()()
        first, second = self.guard.attempts(self.job)
        assert (first["state"], second["state"]) == ("failed", "succeeded"), why
        rerun_failed = self.pinged(3, "fail")
        assert rerun_failed is not None, why
        # Judged on the rerun's /fail after the restart, not before; the next rerun came before the
        # grace would have ended.
        assert parse_time(first["finished_at"]) >= rerun_failed, why
        assert parse_time(second["started_at"]) >= rerun_failed, why
        grace_end = parse_time(first["action_finished_at"]) + timedelta(seconds=self.GRACE_S)
        assert parse_time(second["started_at"]) < grace_end, why
        assert self.reruns() == 2 and not self.overlaps(), why
        assert len(self.incidents_since(failed)) == 1, why


class Frozen(OwnGuardStory):
    name = "frozen"

    def components(self) -> None:
        self.add(self.workload("frozen"), grace_period=3)
        # Over the API: each probe may take 2.5 s, longer than the 1 s interval.
        self.patch("frozen", {"check": {**self._check(), "timeout": 2.5}})

    def _check(self) -> dict:
        return self.guard.get("/api/v1/components/frozen")["check"]

    def pid(self) -> int:
        return int((self.workloads["frozen"].dir / "pid").read_text())

    def play(self) -> None:
        w = self.workloads["frozen"]
        assert self._check()["timeout"] == 2.5, self._check()
        frozen_pid = self.pid()
        stopped = now()
        os.kill(frozen_pid, signal.SIGSTOP)
        try:
            self.wait(lambda: self.verified_after("frozen", stopped) and self.settled("frozen"), "healed")
        finally:
            if _alive(frozen_pid):
                os.kill(frozen_pid, signal.SIGCONT)
        time.sleep(2)
        why = self.why()()
        assert self.states("frozen") == ["succeeded"], why
        assert w.actions() == 1 and w.concurrent_actions() == 0, why
        detected = next(t for t in self.guard.transitions("frozen") if t["current"] == "critical")
        assert "2.5" in detected["reason"], why  # the check's own timeout, not the default
        assert self.pid() != frozen_pid, why


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_guard_killed_while_a_rerun_is_verified(guard_db):
    tell_alone(guard_db, KilledDuringRerun, "batch-kill9")


def test_frozen_target_is_restarted_once(guard_db):
    tell_alone(guard_db, Frozen, "frozen")
