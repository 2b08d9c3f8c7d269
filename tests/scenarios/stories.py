"""Incident stories: each one a short script of faults and edits against a real guard process and real
workload processes, told step by step (``wait_for`` on what the API shows), asserting the whole story
as it goes: which component got which actions, which alerts opened and resolved, each attempt's final
state, and that nothing was healed that should not have been.

Several stories run at once against one guard (one thread each, see test_incident_stories.py); a story
only ever touches its own components. ``Story.run`` keeps the first failed assertion with the
component's life (transitions, attempts, alerts) and the guard's log, for the test to report.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.scenarios.campaign import http_check, recovery
from tests.scenarios.harness import (
    GuardProcess,
    NotificationSink,
    Workload,
    guard_config,
    parse_time,
    wait_for,
)

WAIT_S = 60.0  # bound on any single wait: generous, a loaded machine must not fail a story on speed


def life(guard: GuardProcess, name: str) -> str:
    lines = [f"--- {name} (status {guard.status(name)}) ---"]
    lines += [
        f"  {t['at']} {t['previous']} -> {t['current']} (incident {t['incident_id']}): {t['reason']}"
        for t in guard.transitions(name)
    ]
    lines += [
        f"  attempt {a['id']} #{a['attempt_number']} incident {a['incident_id']} {a['state']} "
        f"{a['started_at']}..{a['finished_at']}: {a['detail']}"
        for a in guard.attempts(name)
    ]
    lines += [
        f"  alert {a['fingerprint']} {a['status']}: {a['message']} [{a.get('resolution_action')}]"
        for a in guard.alerts(name)
    ]
    return "\n".join(lines)


class Story:
    """One story's components and steps. Subclasses define ``components`` and ``play``."""

    name = "story"

    def __init__(self, guard: GuardProcess, root: Path, sink: NotificationSink):
        self.guard = guard
        self.root = root / self.name
        self.sink = sink
        self.workloads: dict[str, Workload] = {}
        self.error: str | None = None
        self.marks: dict[str, object] = {}

    # -- building -----------------------------------------------------------------------------
    def workload(self, name: str, *, role: str = "http", **configure) -> Workload:
        workload = Workload(self.root, name, role=role)
        self.workloads[name] = workload
        if role == "http":
            workload.configure(**configure)
            workload.start()
        return workload

    def add(
        self,
        workload: Workload,
        *,
        check: dict | None = None,
        depends_on: list[str] | None = None,
        heal: bool = True,
        **policy,
    ) -> None:
        """Create the component over the API; ``heal=False``: no recovery policy at all."""
        body = {
            "name": workload.name,
            "critical": True,
            "labels": {"app": workload.name},
            "check": check or http_check(workload),
        }
        if heal:
            body["recovery"] = recovery(workload, **policy)
        if depends_on:
            body["depends_on"] = depends_on
        self.guard.post("/api/v1/components", body, expect=201)

    def patch(self, name: str, body: dict) -> dict:
        r = self.guard.http.patch(
            f"{self.guard.base}/api/v1/components/{name}", json=body, headers=self.guard.headers()
        )
        assert r.status_code == 200, f"PATCH {name}: {r.status_code} {r.text[:500]}"
        return r.json()

    # -- reading ------------------------------------------------------------------------------
    def why(self, *names: str) -> Callable[[], str]:
        def story() -> str:
            parts = [life(self.guard, n) for n in (names or self.workloads)]
            actions = {n: w.actions() for n, w in self.workloads.items()}
            return "\n".join(parts) + f"\nactions run: {actions}"

        return story

    def wait(self, predicate, what: str, *names: str, timeout: float = WAIT_S):
        return wait_for(predicate, timeout, step=0.3, what=f"{self.name}: {what}", story=self.why(*names))

    def healthy(self, *names: str) -> bool:
        statuses = {c["name"]: c["status"] for c in self.guard.get("/api/v1/status")["components"]}
        return all(statuses.get(n) == "healthy" for n in names)

    def states(self, name: str) -> list[str]:
        return [a["state"] for a in self.guard.attempts(name)]

    def settled(self, name: str) -> bool:
        """Healthy (its last transition too: no incident open) and no attempt in flight."""
        transitions = self.guard.transitions(name)
        return (
            self.healthy(name)
            and bool(transitions)
            and transitions[-1]["current"] == "healthy"
            and not [s for s in self.states(name) if s in ("running", "verifying", "pending_approval")]
        )

    def verified_after(self, name: str, at: datetime) -> list[dict]:
        return [
            a
            for a in self.guard.attempts(name)
            if a["state"] == "succeeded" and a["started_at"] and parse_time(a["started_at"]) >= at
        ]

    def alerts(self, name: str, prefix: str) -> list[dict]:
        return [a for a in self.guard.alerts(name) if a["fingerprint"].startswith(prefix)]

    # -- running ------------------------------------------------------------------------------
    def components(self) -> None:
        raise NotImplementedError

    def play(self) -> None:
        raise NotImplementedError

    def run(self, ready: threading.Barrier | None = None) -> None:
        try:
            if ready is not None:
                ready.wait()
            self.play()
        except Exception:  # noqa: BLE001 - reported by the story's test, with the guard's log
            log = [line for line in self.guard.tail(400).splitlines() if "uvicorn.access" not in line]
            self.error = traceback.format_exc() + "\n--- guard log ---\n" + "\n".join(log[-40:])

    def stop(self) -> None:
        for workload in self.workloads.values():
            workload.stop()


def now() -> datetime:
    return datetime.now(UTC)


def tell(
    classes: list[type[Story]], guard: GuardProcess, root: Path, sink: NotificationSink
) -> dict[str, Story]:
    """Start the guard, create every story's components, wait until all are healthy, then play the
    stories at once (one thread each). The guard and the workloads are stopped at the end."""
    stories = {cls.name: cls(guard, root, sink) for cls in classes}
    try:
        guard.start()
        guard.post(
            "/api/v1/channels",
            {"name": "stories-hook", "kind": "webhook", "config": {"url": sink.url}},
            expect=201,
        )
        for story in stories.values():
            story.components()
        first = next(iter(stories.values()))
        names = [n for s in stories.values() for n in s.workloads]
        first.wait(lambda: first.healthy(*names), "every component healthy", *names, timeout=90)
        ready = threading.Barrier(len(stories))
        threads = [threading.Thread(target=s.run, args=(ready,), name=s.name) for s in stories.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        guard.stop()
        for story in stories.values():
            story.stop()
    return stories


def tell_alone(guard_db: tuple[str, Path], story: type[Story], name: str) -> None:
    """Tell ``story`` against its own guard process on the test's database (``guard_db``: its URL and
    work directory), for stories that restart the guard or take its database away."""
    url, workdir = guard_db
    sink = NotificationSink()
    try:
        guard = GuardProcess(url, workdir / f"{name}-guard", config=guard_config())
        story(guard, workdir / name, sink).tell()
    finally:
        sink.close()


# ---------------------------------------------------------------------------------------------------
# Dependencies


class Chain(Story):
    """chain-down depends on chain-up and fails while chain-up is down. chain-up crashes: only chain-up
    is restarted; chain-down recovers by itself once its root is healed (its alert resolves, no action
    on it, nobody notified about it). Then chain-down breaks on its own while chain-up is fine: now
    chain-down IS healed, and chain-up is left alone. Last, chain-up dies again inside chain-down's stick
    window: chain-down's symptoms are chain-up's incident, not a relapse of chain-down's heal."""

    name = "chain"

    def components(self) -> None:
        up = self.workload("chain-up")
        down = self.workload("chain-down")
        down.set("upstream", f"http {up.url}")
        # chain-up is down from its crash until its restart listens. Healed in well under a second,
        # the outage could end before chain-down's second failed check: a 2 s boot (inside the
        # policy's grace) makes chain-down see it every time.
        up.set("boot_delay", "2")
        self.add(up, grace_period=5)
        self.add(down, depends_on=["chain-up"])

    def play(self) -> None:
        up, down = self.workloads["chain-up"], self.workloads["chain-down"]
        injected = up.mode("crash")
        self.wait(
            lambda: (
                down.dir.joinpath("mode").read_text() == "ok"
                and self.guard.transitions("chain-down")[-1]["current"] != "healthy"
            ),
            "chain-down to fail because chain-up is down",
        )
        self.wait(
            lambda: self.verified_after("chain-up", injected) and self.settled("chain-up"),
            "chain-up restarted and verified",
        )
        self.wait(lambda: self.settled("chain-down"), "chain-down to recover by itself")
        time.sleep(3)  # past chain-down's own window: a late action on it would show now
        why = self.why()()
        assert up.actions() == 1, why
        assert down.actions() == 0, why
        assert self.guard.attempts("chain-down") == [], why
        assert self.states("chain-up") == ["succeeded"], why
        downs = [t for t in self.guard.transitions("chain-down") if parse_time(t["at"]) >= injected]
        assert downs and downs[-1]["current"] == "healthy", why
        health = self.alerts("chain-down", "health:")
        assert health and all(a["status"] == "resolved" for a in health), why
        assert not any("healing attempt" in (a.get("resolution_action") or "") for a in health), why
        assert not [p for p in self.sink.for_component("chain-down") if p.get("kind") == "firing"], (
            self.sink.for_component("chain-down"),
            why,
        )
        assert [p for p in self.sink.for_component("chain-up") if p.get("kind") == "firing"], why

        # Its own fault: chain-up answers, chain-down returns 500 whatever it gets from upstream.
        own = down.mode("down")
        self.wait(
            lambda: self.verified_after("chain-down", own) and self.settled("chain-down"),
            "chain-down's own fault to be healed",
        )
        time.sleep(2)
        why = self.why()()
        assert down.actions() == 1, why
        assert up.actions() == 1, why
        assert self.states("chain-down") == ["succeeded"], why
        assert self.states("chain-up") == ["succeeded"], why
        assert self.healthy("chain-up", "chain-down"), why
        health = [a for a in self.alerts("chain-down", "health:") if parse_time(a["first_seen"]) >= own]
        assert health and all(a["status"] == "resolved" for a in health), why
        assert any("healing attempt" in (a.get("resolution_action") or "") for a in health), why

        # chain-up dies again inside chain-down's stick window: chain-down fails because of it. That is
        # chain-up's incident, not a relapse of chain-down's heal: chain-down's heal stays succeeded.
        again = up.mode("crash")
        self.wait(
            lambda: self.verified_after("chain-up", again) and self.settled("chain-up"),
            "chain-up restarted again",
        )
        self.wait(lambda: self.settled("chain-down"), "chain-down to recover by itself again")
        time.sleep(3)
        why = self.why()()
        heal = self.guard.attempts("chain-down")[0]
        assert any(
            t["current"] != "healthy"
            for t in self.guard.transitions("chain-down")
            if parse_time(t["at"]) >= again
        ), why  # it did fail again, within its stick window
        assert down.actions() == 1, why
        assert self.states("chain-down") == ["succeeded"], why
        assert "relapsed" not in (heal["detail"] or ""), why
        assert not self.alerts("chain-down", "healing-breaker:"), why
        assert up.actions() == 2, why
        assert self.states("chain-up")[-1] == "succeeded", why


class BatchChain(Story):
    """The upstream is a batch job watched by its heartbeat (a 10 s period); the downstream service
    serves what the job produces and fails once that is 2 s stale. The job stops: the downstream fails
    within seconds, long before the job's own heartbeat is overdue. The downstream must be held until
    the job's check can tell (its period and grace), then attributed to the job: only the job is
    restarted, the downstream recovers by itself."""

    name = "batch-chain"
    period_s, grace_s = 10.0, 2.0

    def components(self) -> None:
        job = self.workload("batch-job", role="heartbeat")
        check = {
            "kind": "heartbeat",
            "period_s": self.period_s,
            "grace_s": self.grace_s,
            "interval": 1.0,
            "failure_threshold": 2,
            "success_threshold": 1,
        }
        self.add(job, check=check)
        token = self.guard.post("/api/v1/components/batch-job/ping-token")["token"]
        job.configure(guard=self.guard.base, token=token)
        job.start()
        served = self.workload("batch-served")
        served.set("upstream", f"fresh {job.dir / 'output'} 2")
        self.add(served, depends_on=["batch-job"])

    def play(self) -> None:
        job, served = self.workloads["batch-job"], self.workloads["batch-served"]
        injected = job.mode("silent")
        self.wait(
            lambda: self.verified_after("batch-job", injected) and self.settled("batch-job"),
            "the batch job to be restarted and verified",
            timeout=90,
        )
        self.wait(lambda: self.settled("batch-served"), "batch-served to recover by itself")
        time.sleep(3)
        why = self.why()()
        served_life = [t for t in self.guard.transitions("batch-served") if parse_time(t["at"]) >= injected]
        assert any(t["current"] in ("critical", "failed") for t in served_life), why  # it did fail
        assert served.actions() == 0, why
        assert self.guard.attempts("batch-served") == [], why
        assert job.actions() == 1, why
        assert self.states("batch-job") == ["succeeded"], why
        assert not [p for p in self.sink.for_component("batch-served") if p.get("kind") == "firing"], why


# ---------------------------------------------------------------------------------------------------
# Independent faults at the same moment


class Twins(Story):
    """Two independent components crash at the same moment: each is restarted exactly once and both
    heals are verified."""

    name = "twins"

    def components(self) -> None:
        for n in ("twin-a", "twin-b"):
            self.add(self.workload(n))

    def play(self) -> None:
        a, b = self.workloads["twin-a"], self.workloads["twin-b"]
        injected = now()
        a.set("mode", "crash")
        b.set("mode", "crash")
        self.wait(
            lambda: all(self.verified_after(n, injected) and self.settled(n) for n in ("twin-a", "twin-b")),
            "both twins healed",
        )
        time.sleep(3)
        why = self.why()()
        for name, workload in (("twin-a", a), ("twin-b", b)):
            assert workload.actions() == 1, why
            assert workload.concurrent_actions() == 0, why
            assert self.states(name) == ["succeeded"], why
            incidents = {
                t["incident_id"] for t in self.guard.transitions(name) if parse_time(t["at"]) >= injected
            }
            assert len(incidents - {None}) == 1, why
            health = self.alerts(name, "health:")
            assert health and all(a["status"] == "resolved" for a in health), why


# ---------------------------------------------------------------------------------------------------
# Relapse inside and after the stick window (docs/LIFECYCLE.md, rule 5)

STICK_S = 20.0  # the policy's verify_timeout: the stick window after a verified heal


class Relapses(Story):
    """Same policy (stick window 20 s, breaker after one failed incident), two components healed once,
    then crashing again: relapse-in 1 s after its heal is verified, relapse-out 25 s after. Inside the
    window the heal turns into a failed one, the breaker opens, its alert says a human is needed and
    the new incident gets no action. After the window it is a new incident like any other: healed, the
    first heal stays succeeded, no breaker."""

    name = "relapses"

    def components(self) -> None:
        for n in ("relapse-in", "relapse-out"):
            self.add(self.workload(n), verify_timeout=STICK_S, breaker_threshold=1, cooldown=1)

    def heal_time(self, name: str) -> datetime:
        return parse_time(self.guard.attempts(name)[0]["finished_at"])

    def play(self) -> None:
        inside, outside = self.workloads["relapse-in"], self.workloads["relapse-out"]
        injected = now()
        inside.set("mode", "crash")
        outside.set("mode", "crash")
        # Each relapse is timed from its own heal: on a busy machine the two heals can be far apart,
        # and waiting for both first could push relapse-in's past its stick window.
        self.wait(
            lambda: self.verified_after("relapse-in", injected) and self.settled("relapse-in"),
            "relapse-in healed once",
        )
        healed_in = self.heal_time("relapse-in")
        # relapse-in: again 1 s after its heal, well inside the stick window.
        time.sleep(max(0.0, 1 - (now() - healed_in).total_seconds()))
        again_in = inside.mode("crash")
        self.wait(
            lambda: self.verified_after("relapse-out", injected) and self.settled("relapse-out"),
            "relapse-out healed once",
        )
        healed_out = self.heal_time("relapse-out")
        self.wait(lambda: self.alerts("relapse-in", "healing-breaker:"), "relapse-in's breaker alert")
        # relapse-out: 25 s after its heal, past the window.
        time.sleep(max(0.0, STICK_S + 5 - (now() - healed_out).total_seconds()))
        again_out = outside.mode("crash")
        self.wait(
            lambda: self.verified_after("relapse-out", again_out) and self.settled("relapse-out"),
            "relapse-out's new incident healed",
        )
        time.sleep(4)  # relapse-in: still no action on its new incident
        why = self.why()()
        first_in = self.guard.attempts("relapse-in")[0]
        opened_again = next(
            t
            for t in self.guard.transitions("relapse-in")
            if parse_time(t["at"]) >= again_in and t["current"] != "healthy"
        )
        assert parse_time(opened_again["at"]) < healed_in + timedelta(seconds=STICK_S), why
        # The attempt shows its stick window (decision.holds_until) and when the relapse came.
        holds_in = parse_time(first_in["decision"]["holds_until"])
        assert holds_in == parse_time(first_in["finished_at"]) + timedelta(seconds=STICK_S), why
        assert parse_time(first_in["decision"]["relapsed_at"]) < holds_in, why
        assert inside.actions() == 1, why
        assert self.states("relapse-in") == ["failed"], why
        assert "relapsed" in first_in["detail"], why
        breaker = self.alerts("relapse-in", "healing-breaker:")
        assert breaker and breaker[0]["status"] == "firing" and breaker[0]["severity"] == "critical", why
        assert self.guard.status("relapse-in") in ("critical", "failed"), why
        assert outside.actions() == 2, why
        assert self.states("relapse-out") == ["succeeded", "succeeded"], why
        attempts = self.guard.attempts("relapse-out")
        assert attempts[0]["incident_id"] != attempts[1]["incident_id"], why
        assert "relapsed" not in (attempts[0]["detail"] or ""), why
        reopened = next(
            t
            for t in self.guard.transitions("relapse-out")
            if parse_time(t["at"]) >= again_out and t["current"] != "healthy"
        )
        assert parse_time(reopened["at"]) >= parse_time(attempts[0]["decision"]["holds_until"]), why
        assert not self.alerts("relapse-out", "healing-breaker:"), why
        assert not self.alerts("relapse-out", "healing-exhausted:"), why


# ---------------------------------------------------------------------------------------------------
# Edits over the API while an incident is open


class Edits(Story):
    """Four components, each with an incident open, edited over the API before the next step. For the
    first three the first restart fails (back-off 10 s) and the edit comes right after that failure:

    - edit-policy: ``max_attempts`` lowered to 1: the next step is the escalation, no second action;
    - edit-disabled: disabled: no action while disabled; enabled again (restart now works): healed;
    - edit-maintenance: a maintenance window opened: no action inside it; closed: healed;
    - edit-heal-on (degraded, not restarted by default): ``heal_on`` gains ``degraded``: healed.
    """

    name = "edits"
    BACKOFF = 10
    HELD = ("edit-policy", "edit-disabled", "edit-maintenance")

    def components(self) -> None:
        for n in self.HELD:
            self.add(
                self.workload(n, restart_mode="fail"),
                max_attempts=3,
                backoff_initial=self.BACKOFF,
                backoff_max=self.BACKOFF,
                breaker_threshold=5,
            )
        slow = self.workload("edit-heal-on")
        # Slow is 2 s, degraded past 1 s: on a loaded machine a healthy target's answer alone can
        # take half a second, which must not read as still degraded after the restart.
        self.add(slow, check=http_check(slow, timeout=4, degraded_after_ms=1000))

    def edit(self, name: str) -> None:
        w = self.workloads
        if name == "edit-policy":
            self.patch(name, {"recovery": recovery(w[name], max_attempts=1, breaker_threshold=5)})
        elif name == "edit-disabled":
            self.patch(name, {"enabled": False})
        else:
            self.marks["window"] = self.guard.post(
                f"/api/v1/components/{name}/maintenance", {"duration": 300}
            )
        w[name].set("restart_mode", "fix")  # from now on a restart would work: only the guard holds it

    def play(self) -> None:
        w = self.workloads
        for n in self.HELD:
            w[n].set("mode", "down")
        w["edit-heal-on"].set("mode", "slow:2")
        edited: dict[str, datetime] = {}

        def edit_each_after_its_first_failure() -> bool:
            for n in self.HELD:
                if n not in edited and self.states(n) == ["failed"]:
                    self.edit(n)
                    edited[n] = parse_time(self.guard.attempts(n)[0]["finished_at"])
            return len(edited) == len(self.HELD)

        self.wait(edit_each_after_its_first_failure, "every first restart to fail (and its edit)", *self.HELD)
        self.wait(
            lambda: any(t["current"] == "degraded" for t in self.guard.transitions("edit-heal-on")),
            "edit-heal-on degraded",
        )
        self.wait(
            lambda: self.alerts("edit-policy", "healing-exhausted:"), "edit-policy escalated", "edit-policy"
        )
        # Past every back-off: the next step was due for everyone.
        time.sleep(max(0.0, (max(edited.values()) - now()).total_seconds() + self.BACKOFF + 4))
        why = self.why()()
        for n in self.HELD:
            assert w[n].actions() == 1, why
            assert self.states(n) == ["failed"], why
        assert w["edit-heal-on"].actions() == 0, why

        resumed = now()
        self.patch("edit-disabled", {"enabled": True})
        r = self.guard.http.delete(
            f"{self.guard.base}/api/v1/components/edit-maintenance/maintenance/{self.marks['window']['id']}",
            headers=self.guard.headers(),
        )
        assert r.status_code == 200, r.text
        self.patch(
            "edit-heal-on",
            {"recovery": recovery(w["edit-heal-on"], heal_on=["degraded", "critical", "failed"])},
        )
        for n in ("edit-disabled", "edit-maintenance", "edit-heal-on"):
            self.wait(lambda n=n: self.verified_after(n, resumed) and self.settled(n), f"{n} healed", n)
        time.sleep(2)
        why = self.why()()
        assert w["edit-policy"].actions() == 1, why
        assert self.states("edit-policy") == ["failed"], why
        exhausted = self.alerts("edit-policy", "healing-exhausted:")
        assert exhausted and exhausted[0]["status"] == "firing", why
        for n in ("edit-disabled", "edit-maintenance"):
            assert w[n].actions() == 2, why
            assert self.states(n) == ["failed", "succeeded"], why
        assert w["edit-heal-on"].actions() == 1, why
        assert self.states("edit-heal-on") == ["succeeded"], why


SHARED = [Chain, BatchChain, Twins, Relapses, Edits]
