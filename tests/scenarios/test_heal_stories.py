"""Healing under faults the other stories do not drive, told together against one real guard per
dialect, each story on its own components (real workload processes, a real `pipeline-guard serve`):

- heal-hung-cmd: the first restart command hangs far past its own ``timeout``: it is killed (its
  process group gone), the attempt fails, the next restart heals. Never two at once.
- heal-hung-hook: the first strategy is a webhook whose receiver accepts and never answers: the
  webhook's ``timeout`` ends the attempt (failed), the second strategy (a restart) heals.
- heal-rekill: the target dies again while its restart is being verified (before it listens): that
  attempt fails once the policy's grace is over, the next restart heals; one incident.
- heal-edit-verify: the component's check and recovery policy are edited over the API while its
  action is being verified: the heal is still verified, one action.
- heal-cooldown: healed, then failing again past the stick window but inside the policy's
  ``cooldown``: no action before the cooldown ends, then healed; the first heal stays succeeded.
- heal-silenced: a silence covering the component is open when it fails: no action while it lasts;
  once it ends by itself, healed once.
"""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.scenarios.campaign import http_check, recovery
from tests.scenarios.harness import GuardProcess, NotificationSink, group_alive, guard_config, parse_time
from tests.scenarios.stories import Story, now, tell

pytestmark = [pytest.mark.scenarios, pytest.mark.timeout(420)]


def incidents_since(story: Story, name: str, at) -> set[int]:
    return {t["incident_id"] for t in story.guard.transitions(name) if parse_time(t["at"]) >= at} - {None}


class HungRestart(Story):
    name = "heal-hung-cmd"
    COMMAND_TIMEOUT = 3

    def components(self) -> None:
        w = self.workload("heal-hung-cmd", action_sleep="300 once")
        restart = {"kind": "restart", "params": {"argv": w.restart_argv(), "timeout": self.COMMAND_TIMEOUT}}
        self.add(w, strategies=[restart], max_attempts=3, backoff_initial=1, backoff_max=1)

    def play(self) -> None:
        w = self.workloads["heal-hung-cmd"]
        injected = w.mode("crash")
        self.wait(
            lambda: self.verified_after("heal-hung-cmd", injected) and self.settled("heal-hung-cmd"),
            "the hung restart killed and the next one healing",
        )
        time.sleep(2)
        why = self.why()()
        first, second = self.guard.attempts("heal-hung-cmd")
        assert first["state"] == "failed" and "timed out" in (first["detail"] or ""), why
        assert second["state"] == "succeeded", why
        assert w.actions() == 2 and w.concurrent_actions() == 0, why
        assert not [g for g in w.action_groups() if group_alive(g)], why
        assert parse_time(second["started_at"]) >= parse_time(first["finished_at"]), why
        assert len(incidents_since(self, "heal-hung-cmd", injected)) == 1, why


class HangingReceiver:
    """A loopback "rerun" API that accepts the request and never answers (until closed)."""

    def __init__(self):
        self.calls = 0
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                receiver.calls += 1
                receiver.release.wait(120)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/rerun"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class HungWebhook(Story):
    name = "heal-hung-hook"

    def components(self) -> None:
        self.receiver = HangingReceiver()
        w = self.workload("heal-hung-hook")
        webhook = {"kind": "webhook", "params": {"url": self.receiver.url, "method": "POST", "timeout": 2}}
        restart = recovery(w)["strategies"][0]
        self.add(w, strategies=[webhook, restart], max_attempts=3, backoff_initial=1, backoff_max=1)

    def stop(self) -> None:
        super().stop()
        self.receiver.close()

    def play(self) -> None:
        w = self.workloads["heal-hung-hook"]
        injected = w.mode("down")
        self.wait(
            lambda: self.verified_after("heal-hung-hook", injected) and self.settled("heal-hung-hook"),
            "the hung webhook given up and the restart healing",
        )
        time.sleep(2)
        why = self.why()()
        attempts = self.guard.attempts("heal-hung-hook")
        assert [a["strategy"] for a in attempts] == ["webhook", "restart"], why
        assert [a["state"] for a in attempts] == ["failed", "succeeded"], why
        assert self.receiver.calls == 1 and w.actions() == 1, why
        assert len(incidents_since(self, "heal-hung-hook", injected)) == 1, why


class KilledDuringVerification(Story):
    name = "heal-rekill"
    GRACE = 8

    def components(self) -> None:
        # The restarted target listens only after 5 s: killed again before it ever answers.
        self.add(
            self.workload("heal-rekill", boot_delay=5),
            grace_period=self.GRACE,
            verify_timeout=60,
            max_attempts=3,
            backoff_initial=1,
            backoff_max=1,
        )

    def play(self) -> None:
        w = self.workloads["heal-rekill"]
        injected = w.mode("crash")
        self.wait(
            lambda: self.states("heal-rekill") == ["verifying"] and w.actions() == 1,
            "the first restart to be verified",
        )
        killed = w.mode("crash")  # the restarted process exits as soon as it is up
        self.wait(
            lambda: self.verified_after("heal-rekill", killed) and self.settled("heal-rekill"),
            "the failed verification followed by a restart that heals",
        )
        time.sleep(2)
        why = self.why()()
        first, second = self.guard.attempts("heal-rekill")
        assert [first["state"], second["state"]] == ["failed", "succeeded"], why
        assert w.actions() == 2 and w.concurrent_actions() == 0, why
        assert first["incident_id"] == second["incident_id"], why
        assert len(incidents_since(self, "heal-rekill", injected)) == 1, why


class EditedWhileVerifying(Story):
    name = "heal-edit-verify"

    def components(self) -> None:
        self.add(self.workload("heal-edit-verify", boot_delay=5), grace_period=20, verify_timeout=60)

    def play(self) -> None:
        w = self.workloads["heal-edit-verify"]
        injected = w.mode("crash")
        self.wait(lambda: self.states("heal-edit-verify") == ["verifying"], "the restart to be verified")
        self.patch("heal-edit-verify", {"check": http_check(w, timeout=2, failure_threshold=3)})
        self.patch(
            "heal-edit-verify", {"recovery": recovery(w, grace_period=20, verify_timeout=60, cooldown=5)}
        )
        self.wait(
            lambda: self.verified_after("heal-edit-verify", injected) and self.settled("heal-edit-verify"),
            "the heal verified after the edits",
        )
        time.sleep(2)
        why = self.why()()
        assert self.states("heal-edit-verify") == ["succeeded"], why
        assert w.actions() == 1, why
        transitions = [
            t for t in self.guard.transitions("heal-edit-verify") if parse_time(t["at"]) >= injected
        ]
        assert not any(t["current"] == "failed" for t in transitions), why
        assert len(incidents_since(self, "heal-edit-verify", injected)) == 1, why


class Cooldown(Story):
    name = "heal-cooldown"
    STICK = 3
    COOLDOWN = 20

    def components(self) -> None:
        self.add(
            self.workload("heal-cooldown"),
            cooldown=self.COOLDOWN,
            verify_timeout=self.STICK,
            breaker_threshold=5,
        )

    def play(self) -> None:
        w = self.workloads["heal-cooldown"]
        injected = w.mode("crash")
        self.wait(
            lambda: self.verified_after("heal-cooldown", injected) and self.settled("heal-cooldown"),
            "the first heal",
        )
        healed = parse_time(self.guard.attempts("heal-cooldown")[0]["finished_at"])
        time.sleep(max(0.0, self.STICK + 2 - (now() - healed).total_seconds()))
        again = w.mode("crash")
        self.wait(
            lambda: self.verified_after("heal-cooldown", again) and self.settled("heal-cooldown"),
            "the second incident healed once the cooldown is over",
        )
        time.sleep(2)
        why = self.why()()
        first, second = self.guard.attempts("heal-cooldown")
        assert [first["state"], second["state"]] == ["succeeded", "succeeded"], why
        assert "relapsed" not in (first["detail"] or ""), why
        assert parse_time(second["started_at"]) >= healed + timedelta(seconds=self.COOLDOWN), why
        assert w.actions() == 2, why


class Silenced(Story):
    name = "heal-silenced"
    SILENCE = 12

    def components(self) -> None:
        self.add(self.workload("heal-silenced"))

    def play(self) -> None:
        w = self.workloads["heal-silenced"]
        silence = self.guard.post(
            "/api/v1/silences", {"component": "heal-silenced", "duration": self.SILENCE}, expect=201
        )
        ends = parse_time(silence["ends_at"])
        injected = w.mode("crash")
        self.wait(
            lambda: self.verified_after("heal-silenced", injected) and self.settled("heal-silenced"),
            "healed once the silence ended",
        )
        time.sleep(2)
        why = self.why()()
        [attempt] = self.guard.attempts("heal-silenced")
        assert attempt["state"] == "succeeded", why
        assert parse_time(attempt["started_at"]) >= ends, why
        assert w.actions() == 1, why


class FixedWhileDisabled(Story):
    """The first restart fails; the component is disabled and, while it is, a human puts the target
    right. Enabled again past the back-off, the status on record (critical, from before it was
    disabled) is stale: nothing may be restarted before a check has spoken, and the check finds it
    healthy: the incident closes without a second action."""

    name = "heal-disabled-fixed"
    # A 4 s probe timeout: on a loaded machine a 1 s probe of the fixed target can time out, and
    # that failing check would rightly be acted on.
    INTERVAL = 5  # the first check after enabling comes up to one interval later: the stale window

    def components(self) -> None:
        w = self.workload("heal-disabled-fixed", restart_mode="fail")
        self.add(
            w,
            check=http_check(w, interval=self.INTERVAL, timeout=4),
            max_attempts=3,
            backoff_initial=2,
            backoff_max=2,
            breaker_threshold=5,
        )

    def play(self) -> None:
        w = self.workloads["heal-disabled-fixed"]
        w.mode("down")
        self.wait(lambda: self.states("heal-disabled-fixed") == ["failed"], "the first restart to fail")
        self.patch("heal-disabled-fixed", {"enabled": False})
        w.set("restart_mode", "fix")
        w.set("mode", "ok")  # fixed by a human while the guard does not watch
        time.sleep(4)  # past the back-off
        enabled = now()
        self.patch("heal-disabled-fixed", {"enabled": True})
        self.wait(lambda: self.settled("heal-disabled-fixed"), "the incident to close by itself")
        time.sleep(2)
        why = self.why()()
        assert w.actions() == 1, why
        assert self.states("heal-disabled-fixed") == ["failed"], why
        assert not [
            a for a in self.guard.attempts("heal-disabled-fixed") if parse_time(a["created_at"]) >= enabled
        ], why


class BreakerRearms(Story):
    """Healed, then failing again 1 s later: a relapse, and with ``breaker_threshold`` 1 the breaker
    opens, so the new incident waits. Once ``breaker_window`` has passed the breaker re-arms by itself
    (its alert resolved) and that same open incident is healed: healing did not stop for good."""

    name = "heal-breaker"
    WINDOW = 12

    def components(self) -> None:
        self.add(
            self.workload("heal-breaker"), breaker_threshold=1, breaker_window=self.WINDOW, verify_timeout=20
        )

    def play(self) -> None:
        w = self.workloads["heal-breaker"]
        injected = w.mode("crash")
        self.wait(
            lambda: self.verified_after("heal-breaker", injected) and self.settled("heal-breaker"),
            "the first heal",
        )
        time.sleep(1)
        again = w.mode("crash")
        self.wait(lambda: self.alerts("heal-breaker", "healing-breaker:"), "the breaker to open")
        self.wait(
            lambda: self.verified_after("heal-breaker", again) and self.settled("heal-breaker"),
            "the open incident healed once the breaker re-armed",
        )
        time.sleep(2)
        why = self.why()()
        first, second = self.guard.attempts("heal-breaker")
        assert first["state"] == "failed" and "relapsed" in (first["detail"] or ""), why
        assert second["state"] == "succeeded", why
        [breaker] = self.alerts("heal-breaker", "healing-breaker:")
        assert breaker["status"] == "resolved", why
        # The breaker opened with the relapse (its time on the attempt) and re-arms a window later.
        opened = parse_time(first["decision"]["relapsed_at"])
        assert parse_time(second["started_at"]) >= opened + timedelta(seconds=self.WINDOW), why
        assert w.actions() == 2, why


class Worsens(Story):
    """Slow but answering (degraded: not healed by the default ``heal_on``), then down: the same
    incident worsens to critical and is healed, once."""

    name = "heal-worsens"

    def components(self) -> None:
        w = self.workload("heal-worsens")
        self.add(w, check=http_check(w, timeout=2, degraded_after_ms=250))

    def play(self) -> None:
        w = self.workloads["heal-worsens"]
        injected = w.mode("slow")
        self.wait(
            lambda: any(t["current"] == "degraded" for t in self.guard.transitions("heal-worsens")),
            "degraded",
        )
        time.sleep(3)
        assert w.actions() == 0, self.why()()
        w.mode("down")
        self.wait(
            lambda: self.verified_after("heal-worsens", injected) and self.settled("heal-worsens"),
            "healed once critical",
        )
        time.sleep(2)
        why = self.why()()
        assert self.states("heal-worsens") == ["succeeded"], why
        assert w.actions() == 1, why
        assert len(incidents_since(self, "heal-worsens", injected)) == 1, why


class FlapsAfterRestart(Story):
    """Down; its restart brings it back flapping (down 2 s, up 2 s, and restarts keep it so). Its checks
    never give ``success_threshold`` (8) passes nor ``failure_threshold`` (8) failures in a row, so
    neither verdict of those thresholds ever comes: the flapping itself must end the verification
    (the action did not make it stable), the next attempt is made and, with ``max_attempts`` 2, a
    human is told. It must not stay ``recovering`` for ever with nobody told."""

    name = "heal-flap-verify"

    def components(self) -> None:
        w = self.workload("heal-flap-verify", restart_mode="keep")
        self.add(
            w,
            check=http_check(w, failure_threshold=8, success_threshold=8),
            max_attempts=2,
            verify_timeout=15,
            grace_period=2,
            breaker_threshold=5,
        )

    def play(self) -> None:
        w = self.workloads["heal-flap-verify"]
        w.mode("down")
        self.wait(lambda: w.actions() == 1, "the first restart")
        w.mode(f"flap:2:2:{time.time():.3f}")
        self.wait(lambda: self.alerts("heal-flap-verify", "healing-exhausted:"), "human needed", timeout=90)
        time.sleep(3)
        why = self.why()()
        assert self.states("heal-flap-verify") == ["failed", "failed"], why
        assert w.actions() == 2, why
        [exhausted] = self.alerts("heal-flap-verify", "healing-exhausted:")
        assert exhausted["status"] == "firing", why


class Recreated(Story):
    """Healed, then deleted and created again under the same name (a new component), which crashes
    inside the first one's stick window. The new component's incident is its own first one: healed,
    not counted as a relapse of the deleted component's heal (no back-off, no breaker: with
    ``breaker_threshold`` 1 that would stop its healing)."""

    name = "heal-recreated"

    def components(self) -> None:
        self.add(self.workload("heal-recreated"), verify_timeout=60, breaker_threshold=1)

    def play(self) -> None:
        w = self.workloads["heal-recreated"]
        injected = w.mode("crash")
        self.wait(
            lambda: self.verified_after("heal-recreated", injected) and self.settled("heal-recreated"),
            "the first component healed",
        )
        # Disabled first, so no result flush of it runs beside the DELETE: on Postgres the two can
        # deadlock (component_states vs components rows), which is not what this story is about.
        self.patch("heal-recreated", {"enabled": False})
        time.sleep(3)
        r = self.guard.http.delete(
            f"{self.guard.base}/api/v1/components/heal-recreated", headers=self.guard.headers()
        )
        assert r.status_code in (200, 204), r.text
        self.add(w, verify_timeout=60, breaker_threshold=1)
        self.wait(lambda: self.healthy("heal-recreated"), "the new component healthy")
        again = w.mode("crash")
        self.wait(
            lambda: self.verified_after("heal-recreated", again) and self.settled("heal-recreated"),
            "the new component's first incident healed",
        )
        time.sleep(2)
        why = self.why()()
        assert w.actions() == 2, why
        assert self.states("heal-recreated") == ["succeeded", "succeeded"], why
        assert "relapsed" not in (self.guard.attempts("heal-recreated")[0]["detail"] or ""), why
        assert not self.alerts("heal-recreated", "healing-breaker:"), why


class SharedUpstreamBlip(Story):
    """Two consumers (checked every 0.5 s) share an upstream checked every 4 s that needs 4 failures to
    open an incident. The upstream answers 500 for 3.5 s and recovers by itself, long before its own
    threshold: both consumers fail past theirs meanwhile. Nobody is acted on: the consumers are held
    for the upstream, then close by themselves; the upstream never opens an incident."""

    name = "heal-shared-blip"
    CHILDREN = ("blip-child-a", "blip-child-b")
    OUTAGE_S = 3.5

    def components(self) -> None:
        up = self.workload("blip-up")
        self.add(up, check=http_check(up, interval=4, failure_threshold=4))
        for name in self.CHILDREN:
            child = self.workload(name)
            child.set("upstream", f"http {up.url}")
            self.add(child, check=http_check(child, interval=0.5), depends_on=["blip-up"])

    def play(self) -> None:
        up = self.workloads["blip-up"]
        injected = up.mode("down")
        time.sleep(self.OUTAGE_S)
        up.mode("ok")
        self.wait(
            lambda: all(
                [t for t in self.guard.transitions(n) if parse_time(t["at"]) >= injected] and self.settled(n)
                for n in self.CHILDREN
            ),
            "both consumers to have failed and recovered by themselves",
        )
        time.sleep(4)
        why = self.why()()
        for name, workload in self.workloads.items():
            assert workload.actions() == 0, why
            assert self.guard.attempts(name) == [], why
        assert not [t for t in self.guard.transitions("blip-up") if parse_time(t["at"]) >= injected], why
        for name in self.CHILDREN:
            assert not [p for p in self.sink.for_component(name) if p.get("kind") == "firing"], why


STORIES = [
    HungRestart,
    HungWebhook,
    KilledDuringVerification,
    EditedWhileVerifying,
    Cooldown,
    Silenced,
    FixedWhileDisabled,
    BreakerRearms,
    Worsens,
    FlapsAfterRestart,
    Recreated,
    SharedUpstreamBlip,
]


@pytest.fixture(scope="module")
def healed(scenario_db):
    url, workdir = scenario_db
    guard = GuardProcess(url, workdir / "heal-stories-guard", config=guard_config())
    sink = NotificationSink()
    try:
        return tell(STORIES, guard, workdir / "heal-stories", sink)
    finally:
        with contextlib.suppress(Exception):
            sink.close()


@pytest.mark.parametrize("story", [cls.name for cls in STORIES])
def test_heal_story(healed, story):
    error = healed[story].error
    assert error is None, error
