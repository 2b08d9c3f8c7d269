"""The guard itself restarted (SIGTERM, then `serve` again on the same database) in the middle of
incidents, with real workloads:

- restart-verifying: crashed and restarted by the guard; the target boots slowly (12 s), so the
  attempt is ``verifying`` when the guard goes away. Back up, the guard verifies it: one action, the
  attempt succeeded, its health alert resolved by it.
- restart-acting: its restart command is still running (it takes 8 s) when the guard goes away: the
  guard's shutdown stops it; back up, the attempt is settled ``interrupted`` (never left running, its
  process group gone), and the incident is healed by one more restart once its back-off has run out,
  never two at once.
- restart-open: its first restart fails; the guard goes away during the back-off (10 s). Back up, it
  takes the next step once, when the back-off (kept in the database) has run out: healed. The guard
  restarts once more; then the component crashes inside the heal's stick window: the relapse is still
  seen (the heal turns into a failed one) and the new incident is healed.

Never two actions at once, nothing acted on twice. The first restart happens while every component
is at its point, so one guard per dialect tells them together.
"""

from __future__ import annotations

import contextlib
import time
from datetime import timedelta

import pytest

from tests.scenarios.harness import GuardProcess, NotificationSink, group_alive, guard_config, parse_time
from tests.scenarios.stories import Story, now

pytestmark = [pytest.mark.scenarios, pytest.mark.timeout(300)]

BACKOFF = 10
STICK_S = 60.0


class GuardRestarts(Story):
    name = "guard-restarts"

    def components(self) -> None:
        self.add(self.workload("restart-verifying", boot_delay=12), grace_period=30, verify_timeout=60)
        self.add(self.workload("restart-acting", action_sleep="8 once"), backoff_initial=2, backoff_max=2)
        self.add(
            self.workload("restart-open", restart_mode="fail"),
            max_attempts=3,
            backoff_initial=BACKOFF,
            backoff_max=BACKOFF,
            breaker_threshold=5,
            verify_timeout=STICK_S,
            cooldown=1,
        )

    def incidents_since(self, name: str, at) -> set[int]:
        return {t["incident_id"] for t in self.guard.transitions(name) if parse_time(t["at"]) >= at} - {None}

    def play(self) -> None:
        verifying, opened = self.workloads["restart-verifying"], self.workloads["restart-open"]
        acting = self.workloads["restart-acting"]
        injected = now()
        verifying.set("mode", "crash")
        acting.set("mode", "crash")
        opened.set("mode", "down")
        self.wait(
            lambda: (
                self.states("restart-verifying") == ["verifying"]
                and self.states("restart-open") == ["failed"]
                and self.states("restart-acting") == ["running"]
                and acting.actions() == 1
            ),
            "restart-verifying verifying, restart-open's first restart failed, restart-acting's running",
        )
        opened.set("restart_mode", "fix")
        failed_at = parse_time(self.guard.attempts("restart-open")[0]["finished_at"])
        away = self.guard.restart()
        back = now()
        self.wait(
            lambda: all(
                self.verified_after(n, injected) and self.settled(n)
                for n in ("restart-verifying", "restart-open", "restart-acting")
            ),
            "all three healed once the guard is back",
        )
        time.sleep(2)
        why = self.why()() + f"\nguard away {away:.1f}s, back at {back.isoformat()}"
        assert verifying.actions() == 1 and verifying.concurrent_actions() == 0, why
        assert self.states("restart-verifying") == ["succeeded"], why
        assert len(self.incidents_since("restart-verifying", injected)) == 1, why
        attempt = self.guard.attempts("restart-verifying")[0]
        health = self.alerts("restart-verifying", "health:")
        assert health and all(a["status"] == "resolved" for a in health), why
        assert any(
            a.get("resolution_action") == f"restarted by healing attempt {attempt['id']}" for a in health
        ), why
        assert self.states("restart-acting") == ["interrupted", "succeeded"], why
        assert acting.actions() == 2 and acting.concurrent_actions() == 0, why
        assert not [g for g in acting.action_groups() if group_alive(g)], why
        interrupted = self.guard.attempts("restart-acting")[0]
        assert interrupted["finished_at"] and "interrupted" in (interrupted["detail"] or ""), why
        assert len(self.incidents_since("restart-acting", injected)) == 1, why
        assert opened.actions() == 2 and opened.concurrent_actions() == 0, why
        assert self.states("restart-open") == ["failed", "succeeded"], why
        second = self.guard.attempts("restart-open")[1]
        assert parse_time(second["started_at"]) >= failed_at + timedelta(seconds=BACKOFF), why
        assert len(self.incidents_since("restart-open", injected)) == 1, why

        # Restarted again, then a relapse inside the stick window of the heal made before it.
        healed = parse_time(second["finished_at"])
        self.guard.restart()
        self.wait(lambda: self.settled("restart-open"), "restart-open still healthy after the restart")
        again = opened.mode("crash")
        assert again < healed + timedelta(seconds=STICK_S), self.why()()
        self.wait(
            lambda: (
                self.states("restart-open") == ["failed", "failed", "succeeded"]
                and self.settled("restart-open")
            ),
            "the relapse seen and the new incident healed",
        )
        time.sleep(2)
        why = self.why()()
        relapsed = self.guard.attempts("restart-open")[1]
        assert "relapsed" in (relapsed["detail"] or ""), why
        assert parse_time(relapsed["decision"]["relapsed_at"]) >= again, why
        assert opened.actions() == 3 and opened.concurrent_actions() == 0, why
        assert len(self.incidents_since("restart-open", injected)) == 2, why
        assert not self.alerts("restart-open", "healing-breaker:"), why
        assert verifying.actions() == 1 and acting.actions() == 2, why


@pytest.fixture(scope="module")
def restarted(scenario_db):
    url, workdir = scenario_db
    guard = GuardProcess(url, workdir / "restart-stories-guard", config=guard_config())
    sink = NotificationSink()
    story = GuardRestarts(guard, workdir / "restart-stories", sink)
    try:
        guard.start()
        story.components()
        story.wait(lambda: story.healthy(*story.workloads), "every component healthy", timeout=90)
        story.run()
    finally:
        with contextlib.suppress(Exception):
            guard.stop()
        story.stop()
        sink.close()
    return story


def test_guard_restarted_mid_incident(restarted):
    assert restarted.error is None, restarted.error
