"""Healing across faults of the guard itself and of its database, each test with its own guard process:

- the guard is killed with SIGKILL while a restart it made is being verified (the target boots
  slowly): served again, it verifies that restart; one action, the attempt succeeded;
- the database goes away (Postgres: every connection cut and refused at the proxy; SQLite: another
  process holds the write lock past the busy timeout) for 15 s while a target crashes: once it is
  back the incident is healed, exactly once, and a later incident of another component is healed too
  (healing did not stop for good).
"""

from __future__ import annotations

import signal
import threading
import time

import pytest

from tests.scenarios.campaign import http_check
from tests.scenarios.harness import parse_time
from tests.scenarios.stories import Story, now, tell_alone
from tests.scenarios.test_blip_stories import Outage

pytestmark = [pytest.mark.scenarios, pytest.mark.timeout(300)]


class OwnGuardStory(Story):
    """A story told alone against its own guard."""

    def components(self) -> None:  # pragma: no cover - every story defines it
        raise NotImplementedError

    def tell(self) -> None:
        try:
            self.guard.start()
            self.components()
            self.wait(lambda: self.healthy(*self.workloads), "every component healthy", timeout=90)
            self.run()
        finally:
            self.guard.stop()
            self.stop()
        assert self.error is None, self.error


class KilledWhileVerifying(OwnGuardStory):
    name = "kill9-verify"

    def components(self) -> None:
        self.add(self.workload("kill9-verify", boot_delay=10), grace_period=40, verify_timeout=90)

    def play(self) -> None:
        w = self.workloads["kill9-verify"]
        injected = w.mode("crash")
        self.wait(lambda: self.states("kill9-verify") == ["verifying"], "the restart to be verified")
        self.guard.kill9()
        self.guard.start(same_port=True)
        self.wait(
            lambda: self.verified_after("kill9-verify", injected) and self.settled("kill9-verify"),
            "the restart verified by the guard served again",
            timeout=90,
        )
        time.sleep(2)
        why = self.why()()
        assert self.states("kill9-verify") == ["succeeded"], why
        assert w.actions() == 1 and w.concurrent_actions() == 0, why
        incidents = {
            t["incident_id"]
            for t in self.guard.transitions("kill9-verify")
            if parse_time(t["at"]) >= injected
        }
        assert len(incidents - {None}) == 1, why
        health = self.alerts("kill9-verify", "health:")
        assert health and all(a["status"] == "resolved" for a in health), why


class DatabaseAwayAtDetection(OwnGuardStory):
    name = "db-away-detect"
    OUTAGE_S = 15

    def components(self) -> None:
        self.add(self.workload("db-away-crash"), max_attempts=3, backoff_initial=1, backoff_max=2)
        self.add(self.workload("db-away-later"), max_attempts=3, backoff_initial=1, backoff_max=2)

    def play(self) -> None:
        crash, later = self.workloads["db-away-crash"], self.workloads["db-away-later"]
        injected = now()

        def crash_soon() -> None:
            time.sleep(1)
            crash.set("mode", "crash")

        threading.Thread(target=crash_soon, daemon=True).start()
        Outage(self.guard).during_verification(self.OUTAGE_S)  # lock (SQLite) / cut (Postgres)
        self.wait(
            lambda: self.verified_after("db-away-crash", injected) and self.settled("db-away-crash"),
            "the crash seen during the outage healed once the database is back",
            timeout=120,
        )
        again = later.mode("crash")
        self.wait(
            lambda: self.verified_after("db-away-later", again) and self.settled("db-away-later"),
            "a later incident healed too",
        )
        time.sleep(2)
        why = self.why()()
        assert crash.actions() == 1 and crash.concurrent_actions() == 0, why
        assert self.states("db-away-crash") == ["succeeded"], why
        incidents = {
            t["incident_id"]
            for t in self.guard.transitions("db-away-crash")
            if parse_time(t["at"]) >= injected
        }
        assert len(incidents - {None}) == 1, why
        assert later.actions() == 1 and self.states("db-away-later") == ["succeeded"], why
        assert self.guard.get("/api/v1/healing/stats")["in_progress"] == 0, why


class FixedWhileGuardAway(OwnGuardStory):
    """The first restart fails (back-off 2 s); the guard is stopped and, while it is away, a human puts
    the target right. Served again past the back-off, the status on record (critical) is from before
    the guard went away: nothing may be restarted before a check has spoken, and the check finds it
    healthy: the incident closes without a second action."""

    name = "fixed-while-away"
    # A 4 s probe timeout: on a loaded machine a 1 s probe of the fixed target can time out, and
    # that failing check would rightly be acted on.
    INTERVAL = 5  # the first check after the start comes up to one interval later: the stale window

    def components(self) -> None:
        w = self.workload("fixed-while-away", restart_mode="fail")
        self.add(
            w,
            check=http_check(w, interval=self.INTERVAL, timeout=4),
            max_attempts=3,
            backoff_initial=2,
            backoff_max=2,
            breaker_threshold=5,
        )

    def play(self) -> None:
        w = self.workloads["fixed-while-away"]
        w.mode("down")
        self.wait(lambda: self.states("fixed-while-away") == ["failed"], "the first restart to fail")
        self.guard.proc.send_signal(signal.SIGTERM)
        self.guard.proc.wait(timeout=60)
        w.set("restart_mode", "fix")
        w.set("mode", "ok")  # fixed by a human while the guard is away
        time.sleep(3)  # past the back-off
        back = now()
        self.guard.start(same_port=True)
        self.wait(lambda: self.settled("fixed-while-away"), "the incident to close by itself")
        time.sleep(2)
        why = self.why()()
        assert w.actions() == 1, why
        assert self.states("fixed-while-away") == ["failed"], why
        assert not [
            a for a in self.guard.attempts("fixed-while-away") if parse_time(a["created_at"]) >= back
        ], why


def test_guard_killed_while_verifying(guard_db):
    tell_alone(guard_db, KilledWhileVerifying, "kill9-verify")


def test_database_away_while_a_crash_is_detected(guard_db):
    tell_alone(guard_db, DatabaseAwayAtDetection, "db-away")


def test_target_fixed_while_the_guard_was_away(guard_db):
    tell_alone(guard_db, FixedWhileGuardAway, "fixed-away")
