"""Settings written the way users write them, in the config file (``components:``, durations as
``2s``), with a real guard that has ONE healing slot and real workloads:

- decl-a and decl-b crash at the same moment: both are healed, one after the other (the slot is held
  until the first heal is verified), each exactly once;
- decl-slow turns slow (degraded): its file's ``heal_on`` has ``degraded``, so it is restarted; its
  restart does not help and its file's ``max_attempts`` is 1: one action, then "human needed".
"""

from __future__ import annotations

import contextlib
import json
import time

import pytest

from tests.scenarios.harness import GuardProcess, NotificationSink, Workload, guard_config, parse_time
from tests.scenarios.stories import Story, now

pytestmark = [pytest.mark.scenarios, pytest.mark.timeout(300)]


def declared(workload: Workload, *, check: str = "", recovery: str = "") -> str:
    argv = json.dumps(workload.restart_argv())
    return f"""\
  - name: {workload.name}
    critical: true
    check: {{kind: http, url: "{workload.url}", interval: 1s, timeout: 1s, failure_threshold: 2{check}}}
    recovery:
      strategies:
        - {{kind: restart, argv: {argv}, timeout: 30}}
      grace_period: 3s
      verify_timeout: 20s
      cooldown: 1s
      backoff_initial: 1s
      backoff_max: 2s
      breaker_threshold: 5
{recovery}"""


class Declared(Story):
    name = "declared"

    def components(self) -> None:  # declared in the file, created by the guard at start
        pass

    def play(self) -> None:
        a, b, slow = (self.workloads[n] for n in ("decl-a", "decl-b", "decl-slow"))
        injected = now()
        a.set("mode", "crash")
        b.set("mode", "crash")
        slow.set("mode", "slow")
        self.wait(
            lambda: all(self.verified_after(n, injected) and self.settled(n) for n in ("decl-a", "decl-b")),
            "decl-a and decl-b healed",
        )
        self.wait(lambda: self.alerts("decl-slow", "healing-exhausted:"), "decl-slow escalated")
        time.sleep(3)
        why = self.why()()
        assert a.actions() == 1 and b.actions() == 1, why
        first, second = sorted(
            (self.guard.attempts(n)[0] for n in ("decl-a", "decl-b")), key=lambda x: x["started_at"]
        )
        assert first["state"] == second["state"] == "succeeded", why
        # One slot: the second action starts once the first heal is verified (or its attempt ended).
        assert parse_time(second["started_at"]) >= parse_time(first["finished_at"]), why
        assert slow.actions() == 1, why
        assert self.states("decl-slow") == ["failed"], why
        assert self.guard.status("decl-slow") == "degraded", why


def test_declared_settings_and_one_healing_slot(guard_db):
    url, workdir = guard_db
    sink = NotificationSink()
    guard = GuardProcess(url, workdir / "declared-guard", config="")
    story = Declared(guard, workdir / "declared", sink)
    try:
        for name in ("decl-a", "decl-b", "decl-slow"):
            story.workload(name, restart_mode="keep" if name == "decl-slow" else "fix")
        parts = [
            declared(story.workloads["decl-a"]),
            declared(story.workloads["decl-b"]),
            declared(
                story.workloads["decl-slow"],
                check=", degraded_after_ms: 250",
                recovery="      max_attempts: 1\n      heal_on: [degraded, critical, failed]\n",
            ),
        ]
        guard.config_path.write_text(guard_config(max_concurrent=1) + "components:\n" + "".join(parts))
        guard.start()
        story.wait(lambda: story.healthy(*story.workloads), "every component healthy", timeout=90)
        story.run()
    finally:
        with contextlib.suppress(Exception):
            guard.stop()
        story.stop()
        sink.close()
    assert story.error is None, story.error
