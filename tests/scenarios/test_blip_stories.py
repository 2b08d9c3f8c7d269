"""The database goes away at the two quiet moments of an incident, with a real guard and real workloads:

- while the incident is OPEN but before its next action (its first restart failed, the back-off runs
  out while the database is away): the next restart happens once the database is back, exactly once;
- while the action is being VERIFIED (the restarted target boots slowly, inside the policy's grace):
  the heal is verified once the database is back, and nothing is acted on twice.

How the database goes away: SQLite, another process holds the write lock (``BEGIN EXCLUSIVE``) past
the guard's busy timeout; Postgres, every connection of the guard's database is killed with
``pg_terminate_backend`` again and again (before the action), or cut and refused at the proxy (during
verification).
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import time

import pytest
from sqlalchemy.engine import make_url

from tests.scenarios.harness import GuardProcess, NotificationSink, guard_config, parse_time
from tests.scenarios.stories import Story, now

pytestmark = [pytest.mark.scenarios, pytest.mark.timeout(300)]


class Outage:
    """The database away for ``seconds`` (see the module's docstring for how, per dialect)."""

    def __init__(self, guard: GuardProcess):
        self.guard = guard

    def lock(self, seconds: float) -> None:
        holder = sqlite3.connect(self.guard.sqlite_path, timeout=10, isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")
            time.sleep(seconds)
            holder.execute("ROLLBACK")
        finally:
            holder.close()

    def terminate(self, seconds: float) -> int:
        """Kill every backend of the guard's database every 0.3 s; returns how many were killed."""
        url = make_url(self.guard.db_url)
        sql = (
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE datname = '{url.database}' AND pid <> pg_backend_pid()"
        )
        killed = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            out = subprocess.run(
                [
                    "psql",
                    "-h",
                    url.host or "127.0.0.1",
                    "-p",
                    str(url.port or 5432),
                    "-U",
                    url.username or "postgres",
                    "-d",
                    "postgres",
                    "-Atc",
                    sql,
                ],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
            killed += int(out.stdout.strip() or 0)
            time.sleep(0.3)
        return killed

    def cut(self, seconds: float) -> None:
        assert self.guard.proxy is not None
        self.guard.proxy.cut()
        try:
            time.sleep(seconds)
        finally:
            self.guard.proxy.restore()

    def before_action(self, seconds: float) -> None:
        if self.guard.dialect == "sqlite":
            self.lock(seconds)
        else:
            assert self.terminate(seconds) > 0, "no connection of the guard was killed"

    def during_verification(self, seconds: float) -> None:
        if self.guard.dialect == "sqlite":
            self.lock(seconds)
        else:
            self.cut(seconds)


BACKOFF = 4


class BlipBeforeAction(Story):
    """blip-wait's first restart fails; its back-off (4 s) runs out while the database is away (9 s).
    Once it is back: one more restart, verified; two actions in all, never two at once."""

    name = "blip-before-action"

    def components(self) -> None:
        self.add(
            self.workload("blip-wait", restart_mode="fail"),
            max_attempts=3,
            backoff_initial=BACKOFF,
            backoff_max=BACKOFF,
            breaker_threshold=5,
        )

    def play(self) -> None:
        w = self.workloads["blip-wait"]
        injected = w.mode("down")
        self.wait(lambda: self.states("blip-wait") == ["failed"], "the first restart to fail")
        w.set("restart_mode", "fix")
        failed_at = parse_time(self.guard.attempts("blip-wait")[0]["finished_at"])
        Outage(self.guard).before_action(BACKOFF + 5)
        back = now()
        assert (back - failed_at).total_seconds() > BACKOFF, "the back-off must run out during the outage"
        self.wait(
            lambda: self.verified_after("blip-wait", injected) and self.settled("blip-wait"),
            "the next restart once the database is back",
        )
        time.sleep(3)
        why = self.why()()
        assert w.actions() == 2, why
        assert w.concurrent_actions() == 0, why
        assert self.states("blip-wait") == ["failed", "succeeded"], why
        second = self.guard.attempts("blip-wait")[1]
        assert parse_time(second["started_at"]) >= failed_at, why
        incidents = {
            t["incident_id"] for t in self.guard.transitions("blip-wait") if parse_time(t["at"]) >= injected
        }
        assert len(incidents - {None}) == 1, why
        health = self.alerts("blip-wait", "health:")
        assert health and all(a["status"] == "resolved" for a in health), why
        assert any("healing attempt" in (a.get("resolution_action") or "") for a in health), why
        stats = self.guard.get("/api/v1/healing/stats")
        assert stats["in_progress"] == 0, stats


class BlipDuringVerification(Story):
    """blip-verify crashes; its restart is quick but the restarted target listens only after 5 s (the
    policy's grace: 15 s). The database goes away (8 s) while the attempt is verifying. Once it is
    back: verified, one action, the attempt succeeded, the component healthy."""

    name = "blip-during-verification"

    def components(self) -> None:
        self.add(self.workload("blip-verify", boot_delay=5), grace_period=15, verify_timeout=60)

    def play(self) -> None:
        w = self.workloads["blip-verify"]
        injected = w.mode("crash")
        self.wait(lambda: self.states("blip-verify") == ["verifying"], "the attempt to be verifying")
        Outage(self.guard).during_verification(8)
        self.wait(
            lambda: self.verified_after("blip-verify", injected) and self.settled("blip-verify"),
            "the heal to be verified once the database is back",
        )
        time.sleep(3)
        why = self.why()()
        assert w.actions() == 1, why
        assert self.states("blip-verify") == ["succeeded"], why
        transitions = [t for t in self.guard.transitions("blip-verify") if parse_time(t["at"]) >= injected]
        assert not any(t["current"] == "failed" for t in transitions), why
        health = self.alerts("blip-verify", "health:")
        assert health and all(a["status"] == "resolved" for a in health), why


STORIES = [BlipBeforeAction, BlipDuringVerification]


@pytest.fixture(scope="module")
def blipped(scenario_db):
    url, workdir = scenario_db
    guard = GuardProcess(url, workdir / "blip-stories-guard", config=guard_config())
    sink = NotificationSink()
    stories = {cls.name: cls(guard, workdir / "blip-stories", sink) for cls in STORIES}
    try:
        guard.start()
        for story in stories.values():
            story.components()
        first = next(iter(stories.values()))
        names = [n for s in stories.values() for n in s.workloads]
        first.wait(lambda: first.healthy(*names), "every component healthy", *names, timeout=90)
        for story in stories.values():  # one after the other: an outage is the whole guard's
            story.run()
    finally:
        with contextlib.suppress(Exception):
            guard.stop()
        for story in stories.values():
            story.stop()
        sink.close()
    return stories


@pytest.mark.parametrize("story", [cls.name for cls in STORIES])
def test_blip_story(blipped, story):
    error = blipped[story].error
    assert error is None, error
