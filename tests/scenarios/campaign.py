"""The concurrent campaign: one guard per dialect, one component (and one workload process) per fault
pattern, every fault injected at the same moment, each component's incident life read from the API.

A scenario is a small stepper: ``inject()`` breaks its workload, ``step()`` is called about once a
second with a fresh view of the component (transitions, attempts, alerts) and moves through its own
stages (e.g. wait for the heal, watch a settle window for relapses, inject a second fault), until it
says it is done or its deadline passes. The tests in test_incident_lives.py assert on the result.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tests.scenarios.harness import AM_TOKEN, FIXTURES, GuardProcess, NotificationSink, Workload, parse_time

INTERVAL = 1.0
FAILURE_THRESHOLD = 2
CHECK_TIMEOUT = 1.0
SETTLE_S = 6.0  # after a verified heal: long enough for a false "flapping" or a blind spot to show
WATCH_S = 8.0  # after an escalation or while degraded: no further action may happen
UNHEALTHY = {"degraded", "critical", "failed", "recovering"}


def recovery(workload: Workload, **overrides) -> dict:
    policy = {
        "strategies": [{"kind": "restart", "params": {"argv": workload.restart_argv(), "timeout": 60}}],
        "max_attempts": 2,
        "backoff_initial": 1,
        "backoff_max": 2,
        "cooldown": 2,
        "verify_timeout": 20,
        "grace_period": 3,
        "breaker_threshold": 2,
        "breaker_window": 600,
    }
    policy.update(overrides)
    return policy


def http_check(workload: Workload, **overrides) -> dict:
    check = {
        "kind": "http",
        "url": workload.url,
        "interval": INTERVAL,
        "timeout": CHECK_TIMEOUT,
        "failure_threshold": FAILURE_THRESHOLD,
        "success_threshold": 1,
    }
    check.update(overrides)
    return check


@dataclass
class View:
    status: str | None = None
    transitions: list[dict] = field(default_factory=list)
    attempts: list[dict] = field(default_factory=list)
    alerts: list[dict] = field(default_factory=list)

    def transitions_since(self, at: datetime) -> list[dict]:
        return [t for t in self.transitions if parse_time(t["at"]) >= at]

    def first(self, at: datetime, statuses: set[str]) -> dict | None:
        return next((t for t in self.transitions_since(at) if t["current"] in statuses), None)

    def succeeded(self) -> list[dict]:
        return [a for a in self.attempts if a["state"] == "succeeded"]

    def escalations(self) -> list[dict]:
        return [
            a for a in self.alerts if a["fingerprint"].startswith(("healing-exhausted:", "healing-breaker:"))
        ]

    def health_alerts(self) -> list[dict]:
        return [a for a in self.alerts if a["fingerprint"].startswith("health:")]


class Scenario:
    """Base: create the component, inject a fault, wait for a verified heal, then watch a settle window."""

    name = "scenario"
    mode = "crash"
    restart_mode = "fix"
    deadline_s = 90.0
    boot_delay = 0.0
    role = "http"

    def __init__(self, root, guard: GuardProcess):
        self.guard = guard
        self.workload = Workload(root, self.name, role=self.role)
        self.view = View()
        self.stage = "armed"
        self.injected_at: datetime | None = None
        self.started = 0.0
        self.stage_since = 0.0
        self.done = False
        self.timed_out = False
        self.marks: dict[str, datetime] = {}

    # -- set-up --------------------------------------------------------------------------------
    def check(self) -> dict:
        return http_check(self.workload)

    def recovery(self) -> dict:
        return recovery(self.workload)

    def create(self) -> None:
        self.workload.configure(restart_mode=self.restart_mode, boot_delay=self.boot_delay)
        self.workload.start()
        self.guard.post(
            "/api/v1/components",
            {
                "name": self.name,
                "critical": True,
                "labels": {"app": self.name},
                "check": self.check(),
                "recovery": self.recovery(),
            },
            expect=201,
        )

    # -- the run -------------------------------------------------------------------------------
    def inject(self) -> None:
        self.injected_at = self.workload.mode(self.mode)

    def begin(self) -> None:
        self.started = self.stage_since = time.monotonic()
        self.inject()
        self.stage = "wait_heal"

    def move(self, stage: str) -> None:
        self.stage, self.stage_since = stage, time.monotonic()

    def in_stage(self) -> float:
        return time.monotonic() - self.stage_since

    def refresh(self) -> None:
        g = self.guard
        self.view = View(
            g.status(self.name), g.transitions(self.name), g.attempts(self.name), g.alerts(self.name)
        )

    def tick(self) -> None:
        if self.done:
            return
        self.refresh()
        if time.monotonic() - self.started > self.deadline_s:
            self.done = self.timed_out = True
            return
        self.step()

    def step(self) -> None:
        if self.stage == "wait_heal" and self.view.succeeded() and self.view.status == "healthy":
            self.move("settle")
        elif self.stage == "settle" and self.in_stage() >= SETTLE_S:
            self.done = True

    # -- figures -------------------------------------------------------------------------------
    def detected(self, since: datetime | None = None) -> dict | None:
        since = since or self.injected_at
        return self.view.first(since, UNHEALTHY) if since else None

    def detection_s(self, since: datetime | None = None) -> float | None:
        t = self.detected(since)
        since = since or self.injected_at
        return round((parse_time(t["at"]) - since).total_seconds(), 2) if t else None

    def mttr_s(self, since: datetime | None = None) -> float | None:
        """Fault injected -> the first healthy transition after the detection."""
        since = since or self.injected_at
        t = self.detected(since)
        if t is None:
            return None
        healed = self.view.first(parse_time(t["at"]), {"healthy"})
        return round((parse_time(healed["at"]) - since).total_seconds(), 2) if healed else None

    def action_s(self) -> float:
        durations = [
            (parse_time(a["action_finished_at"]) - parse_time(a["started_at"])).total_seconds()
            for a in self.view.attempts
            if a.get("action_finished_at") and a.get("started_at")
        ]
        return max(durations, default=0.0)

    def detection_bound(self) -> float:
        return INTERVAL * FAILURE_THRESHOLD + CHECK_TIMEOUT + 2

    def notes(self) -> list[str]:
        """Extra figures for the summary table."""
        return []

    def bound_s(self) -> float:
        """The issue's yardstick: period x failure_threshold + action time + 2 s (+ what the fault adds)."""
        return INTERVAL * FAILURE_THRESHOLD + self.action_s() + 2 + self.boot_delay + self.extra_bound()

    def extra_bound(self) -> float:
        return 0.0

    def transitions_after_heal(self) -> list[dict]:
        """Transitions after the first verified heal (should be none: no relapse, no false flapping)."""
        healed = self.view.first(self.injected_at, {"healthy"}) if self.injected_at else None
        if healed is None:
            return []
        return [t for t in self.view.transitions_since(parse_time(healed["at"])) if t["id"] != healed["id"]]


class Crash(Scenario):
    name = "crash"
    mode = "crash"


class Hang(Scenario):
    """/health never answers; the check's own 1 s timeout must bound each probe."""

    name = "hang"
    mode = "hang"

    def extra_bound(self) -> float:
        return CHECK_TIMEOUT


class SlowBoot(Scenario):
    """The target crashes; the restarted one listens only after 4 s: the policy's grace (8 s) covers it."""

    name = "slow-boot"
    mode = "crash"
    boot_delay = 4.0

    def recovery(self) -> dict:
        return recovery(self.workload, grace_period=8)


class Heartbeat(Scenario):
    """A batch job stops pinging; restarting it (the recovery command) brings the pings back."""

    name = "heartbeat"
    mode = "silent"
    role = "heartbeat"
    period_s, grace_s = 2.0, 1.0

    def check(self) -> dict:
        return {
            "kind": "heartbeat",
            "period_s": self.period_s,
            "grace_s": self.grace_s,
            "interval": INTERVAL,
            "failure_threshold": FAILURE_THRESHOLD,
            "success_threshold": 1,
        }

    def create(self) -> None:
        self.guard.post(
            "/api/v1/components",
            {
                "name": self.name,
                "critical": True,
                "labels": {"app": self.name},
                "check": self.check(),
                "recovery": self.recovery(),
            },
            expect=201,
        )
        token = self.guard.post(f"/api/v1/components/{self.name}/ping-token")["token"]
        self.workload.configure(guard=self.guard.base, token=token, restart_mode=self.restart_mode)
        self.workload.start()

    def detection_bound(self) -> float:
        return self.period_s + self.grace_s + INTERVAL * FAILURE_THRESHOLD + 2

    def extra_bound(self) -> float:
        return self.period_s + self.grace_s


class Relapse(Scenario):
    """Healed, then it crashes again 3 s later: the guard must see the new failure within one threshold."""

    name = "relapse"
    mode = "crash"
    deadline_s = 110.0

    def step(self) -> None:
        if self.stage == "wait_heal" and self.view.succeeded() and self.view.status == "healthy":
            self.move("healthy_pause")
        elif self.stage == "healthy_pause" and self.in_stage() >= 3:
            self.marks["second_fault"] = self.workload.mode("crash")
            self.move("wait_second_heal")
        elif (
            self.stage == "wait_second_heal"
            and self.view.status == "healthy"
            and [
                a for a in self.view.succeeded() if parse_time(a["started_at"]) >= self.marks["second_fault"]
            ]
        ):
            self.move("settle")
        elif self.stage == "settle" and self.in_stage() >= SETTLE_S:
            self.done = True

    def notes(self) -> list[str]:
        second = self.marks.get("second_fault")
        return (
            [f"after the heal: detect {self.detection_s(second)} s, mttr {self.mttr_s(second)} s"]
            if second
            else []
        )

    def transitions_after_heal(self) -> list[dict]:
        second = self.marks.get("second_fault")
        if second is None:
            return []
        healed = self.view.first(second, {"healthy"})
        if healed is None:
            return []
        return [t for t in self.view.transitions_since(parse_time(healed["at"])) if t["id"] != healed["id"]]


class Degraded(Scenario):
    """Slow but answering: degraded. The default policy must not restart it; it recovers by itself."""

    name = "degraded"
    mode = "slow"
    restart_mode = "keep"  # if the guard restarts it anyway, the restart does not hide the mistake

    def check(self) -> dict:
        return http_check(self.workload, timeout=2, degraded_after_ms=250)

    def step(self) -> None:
        if self.stage == "wait_heal" and self.view.first(self.injected_at, {"degraded"}):
            self.move("watch")
        elif self.stage == "watch" and self.in_stage() >= WATCH_S:
            self.marks["fixed"] = self.workload.mode("ok")
            self.move("wait_recovery")
        elif self.stage == "wait_recovery" and self.view.status == "healthy":
            self.move("settle")
        elif self.stage == "settle" and self.in_stage() >= 2:
            self.done = True


class Flap(Scenario):
    """Down 3 s, up 2 s, forever, restarts or not: healing cannot work, so it must escalate and stop."""

    name = "flap"
    restart_mode = "keep"
    deadline_s = 110.0

    def recovery(self) -> dict:
        return recovery(self.workload, breaker_threshold=1)

    def inject(self) -> None:
        self.injected_at = self.workload.mode(f"flap:3:2:{time.time():.3f}")

    def step(self) -> None:
        if self.stage == "wait_heal" and self.view.escalations():
            self.marks["escalated"] = datetime.now(UTC)
            self.marks["actions_at_escalation"] = self.workload.actions()
            self.move("watch")
        elif self.stage == "watch" and self.in_stage() >= WATCH_S:
            self.done = True


class FailingRestart(Scenario):
    """The restart command fails every time: two attempts, "human needed", the breaker opens, no more."""

    name = "failing-restart"
    mode = "down"
    restart_mode = "fail"

    def recovery(self) -> dict:
        return recovery(self.workload, breaker_threshold=1)

    def step(self) -> None:
        fingerprints = {a["fingerprint"].split(":")[0] for a in self.view.escalations()}
        if self.stage == "wait_heal" and {"healing-exhausted", "healing-breaker"} <= fingerprints:
            self.marks["actions_at_escalation"] = self.workload.actions()
            self.move("watch")
        elif self.stage == "watch" and self.in_stage() >= WATCH_S:
            self.done = True


class NoFix(Scenario):
    """The restart command succeeds but the target still fails: the policy's 3 s grace (not the global
    30 s) bounds the wait for the verdict, each attempt fails, then "human needed"."""

    name = "restart-no-fix"
    mode = "down"
    restart_mode = "keep"

    def recovery(self) -> dict:
        return recovery(self.workload, verify_timeout=60)

    def step(self) -> None:
        if self.stage == "wait_heal" and any(
            a["fingerprint"].startswith("healing-exhausted:") for a in self.view.escalations()
        ):
            self.marks["actions_at_escalation"] = self.workload.actions()
            self.move("watch")
        elif self.stage == "watch" and self.in_stage() >= WATCH_S:
            self.done = True

    def verdict_s(self) -> list[float]:
        """Per attempt: its action's end -> its failed verdict."""
        return [
            round((parse_time(a["finished_at"]) - parse_time(a["action_finished_at"])).total_seconds(), 2)
            for a in self.view.attempts
            if a["state"] == "failed" and a.get("action_finished_at") and a.get("finished_at")
        ]

    def notes(self) -> list[str]:
        return [f"action end -> failed verdict {self.verdict_s()} s (bound {self.verdict_bound():g})"]

    def verdict_bound(self) -> float:
        return 3 + INTERVAL * FAILURE_THRESHOLD + 2  # grace_period + threshold + 2 s


class External(Scenario):
    """Alertmanager (payload format 0.25) reports the component; its own checks stay green. One action,
    verified when Alertmanager resolves the alert."""

    name = "external"
    mode = "ok"

    def payload(self, status: str) -> dict:
        doc = json.loads((FIXTURES / "alertmanager" / "firing_from_prometheus.json").read_text())
        labels = {"alertname": "PipelineStageStuck", "component": self.name, "severity": "critical"}
        starts = self.injected_at or datetime.now(UTC)
        alert = {
            **doc["alerts"][0],
            "status": status,
            "labels": labels,
            "annotations": {"summary": f"{self.name} stopped consuming"},
            "startsAt": starts.isoformat().replace("+00:00", "Z"),
            "fingerprint": "5c3a9e1f00d1e2a7",
        }
        if status == "resolved":
            alert["endsAt"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        return {
            **doc,
            "status": status,
            "alerts": [alert],
            "commonLabels": labels,
            "groupLabels": {"alertname": labels["alertname"]},
            "commonAnnotations": alert["annotations"],
        }

    def post(self, status: str) -> None:
        r = self.guard.http.post(
            self.guard.base + "/api/v1/integrations/alertmanager",
            json=self.payload(status),
            headers={"Authorization": f"Bearer {AM_TOKEN}"},
        )
        assert r.status_code == 200, r.text

    def inject(self) -> None:
        self.injected_at = datetime.now(UTC)
        self.post("firing")

    def step(self) -> None:
        if self.stage == "wait_heal" and self.workload.actions() >= 1:
            self.move("watch")
        elif self.stage == "watch" and self.in_stage() >= 12:
            self.marks["actions_before_resolve"] = self.workload.actions()
            self.marks["resolved"] = datetime.now(UTC)
            self.post("resolved")
            self.move("wait_verified")
        elif self.stage == "wait_verified" and (self.view.succeeded() or self.in_stage() >= 15):
            self.move("settle")
        elif self.stage == "settle" and self.in_stage() >= 3:
            self.done = True

    def detection_s(self, since=None) -> float | None:
        """For an external alert: the alert's arrival -> the action's start."""
        first = self.view.attempts[0] if self.view.attempts else None
        if first is None or not first.get("started_at"):
            return None
        return round((parse_time(first["started_at"]) - self.injected_at).total_seconds(), 2)

    def mttr_s(self, since=None) -> float | None:
        return None

    def notes(self) -> list[str]:
        return ["detect = alert posted -> action started"]


class Control(Scenario):
    """Healthy all along, with the same recovery policy: no incident, no action, no alert."""

    name = "control"
    mode = "ok"

    def inject(self) -> None:
        self.injected_at = datetime.now(UTC)

    def step(self) -> None:
        pass  # done when every other scenario is


ALL = [Crash, Hang, Degraded, Flap, SlowBoot, FailingRestart, NoFix, Heartbeat, External, Relapse, Control]


def build(root, guard: GuardProcess) -> dict[str, Scenario]:
    return {cls.name: cls(root, guard) for cls in ALL}


def run_campaign(guard: GuardProcess, sink: NotificationSink, scenarios: dict[str, Scenario]) -> None:
    """Create everything, break everything at once, step every scenario until all are done. The caller
    stops the guard before the workloads (a workload killed under a live guard is a fault of its own)."""
    guard.post(
        "/api/v1/channels",
        {"name": "scenario-hook", "kind": "webhook", "config": {"url": sink.url}},
        expect=201,
    )
    for scenario in scenarios.values():
        scenario.create()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        statuses = {c["name"]: c["status"] for c in guard.get("/api/v1/status")["components"]}
        if all(statuses.get(name) == "healthy" for name in scenarios):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"not every component became healthy: {statuses}\n{guard.tail()}")
    time.sleep(2)  # a few green checks on record before anything breaks
    for scenario in scenarios.values():
        scenario.begin()
    began, shown = time.monotonic(), 0.0
    while not all(s.done for name, s in scenarios.items() if name != "control"):
        for name, scenario in scenarios.items():
            if name != "control":
                scenario.tick()
        if time.monotonic() - shown >= 10:  # progress, seen with -s
            shown = time.monotonic()
            print(
                f"[{shown - began:5.1f}s] "
                + ", ".join(
                    f"{n}:{s.stage}{'*' if s.done else ''}/{s.view.status}/{s.workload.actions()}"
                    for n, s in scenarios.items()
                ),
                flush=True,
            )
        time.sleep(1.0)
    for scenario in scenarios.values():  # the last word, after every stepper stopped
        scenario.refresh()
    scenarios["control"].done = True
