"""Root cause on an overloaded machine: the guard shares one core with busy-loop processes (twice as
many as the machine has cores), so its checks run seconds late, while the workloads it watches keep
a core of their own. ov-db feeds ov-api and ov-cache; ov-worker needs both (a diamond, and a chain of
three). ov-db is killed (-9): only ov-db may be restarted, and once; ov-api, ov-cache and ov-worker
fail because of it, are attributed to it (not healed, no notification of their own) and recover by
themselves; everything ends healthy. The guard's own measure of its lateness (the scheduler's lag)
is part of the failure report."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
import urllib.request

import pytest

from tests.scenarios.campaign import http_check
from tests.scenarios.harness import FIGURES, Figures, GuardProcess, NotificationSink, guard_config, parse_time
from tests.scenarios.overload import CpuHogs, cores, loaded_core, other_cores, pin
from tests.scenarios.stories import Story, now

pytestmark = [pytest.mark.scenarios, pytest.mark.timeout(600)]

WAIT_S = 150.0  # a guard with a fifth of a core needs minutes for what takes seconds when idle


class OverloadedDiamond(Story):
    name = "overload"
    ROOT = "ov-db"
    DEPENDENTS = ("ov-api", "ov-cache", "ov-worker")

    def components(self) -> None:
        workloads = {n: self.workload(n) for n in (self.ROOT, *self.DEPENDENTS)}
        for workload in workloads.values():
            workload.set("cpus", ",".join(str(c) for c in sorted(other_cores())))
        db = workloads[self.ROOT]
        # Down from its kill until its restart listens: every dependent sees the outage.
        db.set("boot_delay", "2")
        for name in ("ov-api", "ov-cache"):
            workloads[name].set("upstream", f"http {db.url}")
        workloads["ov-worker"].set("upstream", f"http {workloads['ov-api'].url}")
        self.add(db, grace_period=5)
        self.add(workloads["ov-api"], depends_on=[self.ROOT])
        self.add(workloads["ov-cache"], depends_on=[self.ROOT])
        self.add(workloads["ov-worker"], depends_on=["ov-api", "ov-cache"])

    def failed_since(self, name: str, at) -> bool:
        return any(
            parse_time(t["at"]) >= at and t["current"] != "healthy" for t in self.guard.transitions(name)
        )

    def lag(self) -> str:
        scheduler = self.guard.get("/api/v1/status/detailed")["scheduler"]
        return (
            f"scheduler lag p50 {scheduler['scheduler_lag_p50_seconds']} s, "
            f"p99 {scheduler['scheduler_lag_p99_seconds']} s, overruns {scheduler['overruns']}"
        )

    def why_with_lag(self) -> str:
        return f"{self.why()()}\n{self.lag()}"

    def play(self) -> None:
        db = self.workloads[self.ROOT]
        killed = now()
        os.kill(int(db.dir.joinpath("pid").read_text()), signal.SIGKILL)
        self.wait(
            lambda: self.verified_after(self.ROOT, killed) and self.settled(self.ROOT),
            "ov-db restarted and verified",
            timeout=WAIT_S,
        )
        self.wait(
            lambda: all(self.settled(n) for n in self.DEPENDENTS),
            "the dependents to recover by themselves",
            timeout=WAIT_S,
        )
        time.sleep(10)  # past the dependents' own windows, late checks included
        why = self.why_with_lag()
        for name in self.DEPENDENTS:
            assert self.failed_since(name, killed), why  # the outage was seen: attribution was needed
        assert db.actions() == 1, why
        assert self.states(self.ROOT) == ["succeeded"], why
        assert [p for p in self.sink.for_component(self.ROOT) if p.get("kind") == "firing"], why
        for name in self.DEPENDENTS:
            assert self.workloads[name].actions() == 0, why
            assert self.guard.attempts(name) == [], why
            firing = [p for p in self.sink.for_component(name) if p.get("kind") == "firing"]
            assert not firing, why
            health = self.alerts(name, "health:")
            assert all(a["status"] == "resolved" for a in health), why
        assert self.healthy(self.ROOT, *self.DEPENDENTS), why
        FIGURES.append(
            Figures(
                self.guard.dialect, self.name, actions=db.actions(), outcome="root only", notes=[self.lag()]
            )
        )


def tell(guard_db, story_cls: type[OverloadedDiamond], name: str, *, hogs: CpuHogs | None = None) -> None:
    """Tell the story against its own guard (pinned to the loaded core beside ``hogs``, if any)."""
    url, workdir = guard_db
    sink = NotificationSink()
    guard = GuardProcess(url, workdir / f"{name}-guard", config=guard_config())
    story = story_cls(guard, workdir / name, sink)
    try:
        guard.start()
        guard.post(
            "/api/v1/channels", {"name": f"{name}-hook", "kind": "webhook", "config": {"url": sink.url}}
        )
        story.components()
        story.wait(lambda: story.healthy(*story.workloads), "every component healthy", timeout=90)
        if hogs is None:
            story.run()
        else:
            assert guard.proc is not None
            pin(guard.proc.pid, {loaded_core()})
            with hogs:
                story.run()
    finally:
        guard.stop()
        story.stop()
        sink.close()
    assert story.error is None, story.error


def test_root_cause_on_an_overloaded_machine(guard_db):
    tell(guard_db, OverloadedDiamond, "overload", hogs=CpuHogs(2 * len(cores()), {loaded_core()}))


class StalledDuringTheHold(OverloadedDiamond):
    """The worst an overloaded machine does to the guard: no CPU at all for a while. stall-up is checked
    every 4 s (2 failures to open), stall-child every 0.5 s: when stall-up starts answering 500 just
    after a check, stall-child's incident opens seconds before stall-up's could and is held. The guard
    is stopped (SIGSTOP) right then, for longer than the hold window, and let go (SIGCONT): stall-up's
    checks have not run since stall-child failed, so its state is unknown, not healthy. stall-child must
    stay held, then be attributed to stall-up: only stall-up is restarted."""

    name = "stall"
    ROOT = "stall-up"
    DEPENDENTS = ("stall-child",)
    UP_INTERVAL = 4.0
    STALL_S = 20.0  # past stall-child's hold: stall-up's window (4 x 2 + 1 s) and the 5 s slack

    def components(self) -> None:
        up = self.workload(self.ROOT)
        child = self.workload("stall-child")
        child.set("upstream", f"http {up.url}")
        self.add(up, check=http_check(up, interval=self.UP_INTERVAL), grace_period=self.UP_INTERVAL + 2)
        self.add(child, check=http_check(child, interval=0.5), depends_on=[self.ROOT])

    def entry(self, name: str) -> dict:
        return next(c for c in self.guard.get("/api/v1/status")["components"] if c["name"] == name)

    def play(self) -> None:
        up = self.workloads[self.ROOT]
        checked = self.entry(self.ROOT)["last_check_at"]
        self.wait(lambda: self.entry(self.ROOT)["last_check_at"] != checked, "a check of stall-up")
        injected = up.mode("down")  # just after a check: its next two are 4 and 8 s away
        held = self.wait(
            lambda: (self.entry("stall-child").get("current_incident") or {}).get("suppressed"),
            "stall-child's incident to open, held",
        )
        incident = self.entry("stall-child")["current_incident"]
        why = self.why_with_lag()
        assert held and incident["caused_by"] is None, why  # held: stall-up still looked healthy
        assert self.guard.proc is not None
        os.kill(self.guard.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(self.STALL_S)
        finally:
            os.kill(self.guard.proc.pid, signal.SIGCONT)
        self.wait(
            lambda: self.verified_after(self.ROOT, injected) and self.settled(self.ROOT),
            "stall-up restarted and verified",
            timeout=WAIT_S,
        )
        self.wait(lambda: self.settled("stall-child"), "stall-child to recover by itself", timeout=WAIT_S)
        time.sleep(5)  # past stall-child's own window: a late action on it would show now
        why = self.why_with_lag()
        assert self.failed_since("stall-child", injected), why
        assert up.actions() == 1, why
        assert self.states(self.ROOT) == ["succeeded"], why
        assert self.workloads["stall-child"].actions() == 0, why
        assert self.guard.attempts("stall-child") == [], why
        assert not [p for p in self.sink.for_component("stall-child") if p.get("kind") == "firing"], why
        assert self.healthy(self.ROOT, "stall-child"), why


def test_root_cause_when_the_guard_stalls_during_a_hold(guard_db):
    tell(guard_db, StalledDuringTheHold, "stall")


def stop_repeatedly(pid: int, times: int, stop_s: float, *, between_s: float) -> None:
    """Stop the process (SIGSTOP) ``times`` times for ``stop_s``, letting it run ``between_s`` after each."""
    for _ in range(times):
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(stop_s)
        finally:
            os.kill(pid, signal.SIGCONT)
        time.sleep(between_s)


class StoppedMidCheck(OverloadedDiamond):
    """A guard stopped (SIGSTOP) while a check is in flight, for longer than the check's timeout, then
    let go (SIGCONT): the target answered in time, its answer waited in the socket. stop-slow answers
    every request in 0.45 s and is checked every 0.5 s with a 1 s timeout, so a check is in flight at
    almost any moment, and one failed check opens an incident (failure threshold 1). The guard is
    stopped four times: no check may fail for it, nothing is healed, nobody is notified."""

    name = "stopped"
    ROOT = "stop-slow"
    DEPENDENTS = ()
    STOPS = 4
    STOP_S = 2.5  # past the check's timeout (1 s) and its hard cap

    def components(self) -> None:
        target = self.workload(self.ROOT)
        target.mode("slow:0.45")
        self.add(target, check=http_check(target, interval=0.5, timeout=1.0, failure_threshold=1))

    def play(self) -> None:
        assert self.guard.proc is not None
        started = now()
        stop_repeatedly(self.guard.proc.pid, self.STOPS, self.STOP_S, between_s=1.5)
        checked = self.entry()["last_check_at"]
        self.wait(lambda: self.entry()["last_check_at"] != checked, "a check after the last stop")
        why = self.why_with_lag()
        assert not self.failed_since(self.ROOT, started), why
        assert self.workloads[self.ROOT].actions() == 0, why
        assert not [p for p in self.sink.for_component(self.ROOT) if p.get("kind") == "firing"], why

    def entry(self) -> dict:
        return next(c for c in self.guard.get("/api/v1/status")["components"] if c["name"] == self.ROOT)


def test_an_answer_that_arrived_while_the_guard_was_stopped_is_no_failure(guard_db):
    tell(guard_db, StoppedMidCheck, "stopped")


class StoppedBetweenPings(OverloadedDiamond):
    """A batch job pings every 0.5 s (heartbeat period 2 s, grace 1 s, checked every 0.5 s, one failed
    check is unhealthy, a rerun as its recovery) and pushes a metric point as often (an ``absent``
    rule: fires after 2 s without one). The guard is stopped (SIGSTOP) four times for 4 s, past the
    period, the grace and the rule's window, and let go (SIGCONT): the job kept pinging and pushing,
    its requests waited in the guard's socket. The job is never late for it and its series never
    silent: no failed check, no rerun, no anomaly, nobody notified. Then the job stops for real: the
    guard still calls it late, and the series silent."""

    name = "deaf"
    ROOT = "deaf-job"
    DEPENDENTS = ()
    STOPS = 4
    STOP_S = 4.0
    PING_EVERY_S = 0.5

    def components(self) -> None:
        self.dir = self.root / self.ROOT
        self.dir.mkdir(parents=True, exist_ok=True)
        self.reruns = self.dir / "reruns"
        rerun = f"open({str(self.reruns)!r}, 'a').write('rerun\\n')"
        check = {
            "kind": "heartbeat",
            "period_s": 2,
            "grace_s": 1,
            "interval": 0.5,
            "failure_threshold": 1,
            "success_threshold": 1,
        }
        policy = {
            "strategies": [{"kind": "restart", "params": {"argv": [sys.executable, "-c", rerun]}}],
            "grace_period": 1,
            "verify_timeout": 5,
            "max_attempts": 1,
        }
        self.guard.post(
            "/api/v1/components", {"name": self.ROOT, "critical": True, "check": check, "recovery": policy}
        )
        token = self.guard.post(f"/api/v1/components/{self.ROOT}/ping-token")["token"]
        self.url = f"{self.guard.base}/ping/{token}"
        rule = {
            "name": "deaf-rows",
            "component": self.ROOT,
            "metric_name": "rows",
            "kind": "absent",
            "params": {"for": "2s"},
            "severity": "critical",
        }
        self.guard.post("/api/v1/rules", rule, expect=201)
        self.auth = self.guard.headers()["Authorization"]
        self.pinging = threading.Event()
        self.pinging.set()
        self.pinger = threading.Thread(target=self._job, name="deaf-job", daemon=True)
        self.pinger.start()

    def _job(self) -> None:
        point = {"component": self.ROOT, "metric_name": "rows", "value": 1.0}
        while self.pinging.is_set():
            with contextlib.suppress(OSError), urllib.request.urlopen(self.url, timeout=30) as answer:
                answer.read()
            push = urllib.request.Request(
                f"{self.guard.base}/api/v1/metrics",
                data=json.dumps(point).encode(),
                headers={"Authorization": self.auth, "Content-Type": "application/json"},
            )
            with contextlib.suppress(OSError), urllib.request.urlopen(push, timeout=30) as answer:
                answer.read()
            time.sleep(self.PING_EVERY_S)

    def anomalies(self) -> list[dict]:
        return [a for a in self.guard.get("/api/v1/rules/anomalies") if a["component"] == self.ROOT]

    def play(self) -> None:
        assert self.guard.proc is not None
        self.wait(lambda: self.healthy(self.ROOT), "the job seen healthy")
        started = now()
        stop_repeatedly(self.guard.proc.pid, self.STOPS, self.STOP_S, between_s=2.0)
        why = f"{self.why_with_lag()}\nanomalies: {self.anomalies()}"
        assert not self.failed_since(self.ROOT, started), why
        assert not self.reruns.exists(), why
        assert not [p for p in self.sink.for_component(self.ROOT) if p.get("kind") == "firing"], why
        assert self.anomalies() == [], why
        self.pinging.clear()
        self.pinger.join(timeout=35)
        self.wait(lambda: self.failed_since(self.ROOT, started), "the job late once it stopped pinging")
        self.wait(lambda: self.anomalies(), "its series silent once it stopped pushing")

    def stop(self) -> None:
        with contextlib.suppress(AttributeError):
            self.pinging.clear()
        super().stop()


def test_pings_sent_while_the_guard_was_stopped_make_no_job_late(guard_db):
    tell(guard_db, StoppedBetweenPings, "deaf")
