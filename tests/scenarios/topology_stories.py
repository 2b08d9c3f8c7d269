"""Dependency topologies told as stories (docs/LIFECYCLE.md rule 8): a shared upstream with several
consumers and a consumer with two upstreams, a consumer whose failure is seen long before its
upstream's, an upstream that recovers by itself, and an upstream that fails while its consumer's own
heal is being verified. In each, only the failing root may be acted on;
its consumers recover by themselves, unnotified and untouched, and a consumer that fails on its own
afterwards is healed like any other component."""

from __future__ import annotations

import time
from datetime import datetime

from tests.scenarios.campaign import http_check
from tests.scenarios.harness import parse_time
from tests.scenarios.stories import Story, now


class Dependents(Story):
    """Helpers shared by the topology stories."""

    def failed_since(self, name: str, at: datetime) -> list[dict]:
        return [
            t
            for t in self.guard.transitions(name)
            if parse_time(t["at"]) >= at and t["current"] in ("degraded", "critical", "failed")
        ]

    def notified_firing(self, name: str) -> list[dict]:
        return [p for p in self.sink.for_component(name) if p.get("kind") == "firing"]

    def untouched(self, name: str, why: str) -> None:
        """No action, no attempt, no firing notification: a symptom of its upstream, nothing more."""
        assert self.workloads[name].actions() == 0, why
        assert self.guard.attempts(name) == [], why
        assert not self.notified_firing(name), (self.sink.for_component(name), why)
        health = self.alerts(name, "health:")
        assert all(a["status"] == "resolved" for a in health), why
        assert not any("healing attempt" in (a.get("resolution_action") or "") for a in health), why


class Diamond(Dependents):
    """dia-root feeds four consumers: dia-a, dia-b and dia-own (one upstream each) and dia-two, which
    also needs dia-side (healthy all along); dia-leaf needs dia-a (a chain of three). dia-root crashes,
    and while it is down dia-own breaks on its own too. Only dia-root is restarted while it is down;
    every other consumer fails because of it and recovers by itself, unnotified and untouched; dia-side
    is never touched. dia-own, still failing once its root is back, is released and healed, once.
    Then dia-a breaks on its own while dia-root is fine: dia-a IS healed; dia-leaf, failing because of
    dia-a, is not; nothing else moves."""

    name = "diamond"
    CONSUMERS = ("dia-a", "dia-b", "dia-two", "dia-own", "dia-leaf")
    SYMPTOMS = ("dia-a", "dia-b", "dia-two", "dia-leaf")  # fail only because of an upstream

    def components(self) -> None:
        root = self.workload("dia-root")
        side = self.workload("dia-side")
        # Down from its crash until its restart listens: a 2 s boot (inside the grace) makes every
        # consumer see the outage, however fast the restart.
        root.set("boot_delay", "2")
        self.add(root, grace_period=5)
        self.add(side)
        for name in ("dia-a", "dia-b", "dia-two", "dia-own"):
            consumer = self.workload(name)
            consumer.set("upstream", f"http {root.url}")
            self.add(consumer, depends_on=["dia-root", "dia-side"] if name == "dia-two" else ["dia-root"])
        leaf = self.workload("dia-leaf")
        leaf.set("upstream", f"http {self.workloads['dia-a'].url}")
        self.add(leaf, depends_on=["dia-a"])

    def play(self) -> None:
        root, own = self.workloads["dia-root"], self.workloads["dia-own"]
        injected = root.mode("crash")
        self.wait(
            lambda: all(self.failed_since(n, injected) for n in self.CONSUMERS),
            "every consumer to fail because dia-root is down",
        )
        own.set("mode", "down")  # its own fault, inside its upstream's outage
        self.wait(
            lambda: self.verified_after("dia-root", injected) and self.settled("dia-root"),
            "dia-root restarted and verified",
        )
        self.wait(
            lambda: all(self.settled(n) for n in self.CONSUMERS),
            "the consumers to recover (dia-own healed once released)",
        )
        time.sleep(3)  # past the consumers' own windows: a late action on one of them would show now
        why = self.why()()
        assert root.actions() == 1, why
        assert root.concurrent_actions() == 0, why
        assert self.states("dia-root") == ["succeeded"], why
        assert self.notified_firing("dia-root"), why
        for name in self.SYMPTOMS:
            self.untouched(name, why)
        self.untouched("dia-side", why)
        assert not self.failed_since("dia-side", injected), why  # the healthy upstream stayed healthy
        # dia-own: acted on only once its root was healed (released), then healed and notified.
        assert own.actions() == 1, why
        assert self.states("dia-own") == ["succeeded"], why
        root_healed = parse_time(self.guard.attempts("dia-root")[0]["finished_at"])
        assert parse_time(self.guard.attempts("dia-own")[0]["started_at"]) >= root_healed, why
        assert self.notified_firing("dia-own"), why

        # dia-a's own fault, with its upstream fine: now it is healed, and only it (dia-leaf, failing
        # because of it, is its symptom).
        a = self.workloads["dia-a"]
        own_fault = a.mode("down")
        self.wait(
            lambda: self.verified_after("dia-a", own_fault) and self.settled("dia-a"),
            "dia-a's own fault to be healed",
        )
        self.wait(lambda: self.settled("dia-leaf"), "dia-leaf to recover by itself")
        time.sleep(2)
        why = self.why()()
        assert a.actions() == 1, why
        assert self.states("dia-a") == ["succeeded"], why
        assert root.actions() == 1 and own.actions() == 1, why
        assert self.failed_since("dia-leaf", own_fault), why
        self.untouched("dia-leaf", why)
        for name in ("dia-b", "dia-two", "dia-side", "dia-own", "dia-root"):
            assert not self.failed_since(name, own_fault), why
        for name in ("dia-b", "dia-two", "dia-side"):
            assert self.workloads[name].actions() == 0, why
        health = [h for h in self.alerts("dia-a", "health:") if parse_time(h["first_seen"]) >= own_fault]
        assert health and all(h["status"] == "resolved" for h in health), why
        assert any("healing attempt" in (h.get("resolution_action") or "") for h in health), why
        assert [
            p for p in self.notified_firing("dia-a") if parse_time(p["alert"]["first_seen"]) >= own_fault
        ], why


class ChildSeenFirst(Dependents):
    """first-child is checked every 0.5 s, its upstream first-up every 4 s (2 failures to open): when
    first-up starts answering 500, first-child's failure is seen seconds before first-up's. It must be
    held, then attributed to first-up, never restarted; first-up is restarted once."""

    name = "child-first"
    UP_INTERVAL = 4.0

    def components(self) -> None:
        up = self.workload("first-up")
        child = self.workload("first-child")
        child.set("upstream", f"http {up.url}")
        self.add(up, check=http_check(up, interval=self.UP_INTERVAL), grace_period=self.UP_INTERVAL + 2)
        self.add(child, check=http_check(child, interval=0.5), depends_on=["first-up"])

    def play(self) -> None:
        up, child = self.workloads["first-up"], self.workloads["first-child"]
        injected = up.mode("down")
        self.wait(
            lambda: self.verified_after("first-up", injected) and self.settled("first-up"),
            "first-up restarted and verified",
        )
        self.wait(lambda: self.settled("first-child"), "first-child to recover by itself")
        time.sleep(3)
        why = self.why()()
        child_down = [
            t
            for t in self.guard.transitions("first-child")
            if parse_time(t["at"]) >= injected and t["current"] != "healthy"
        ]
        up_down = [
            t
            for t in self.guard.transitions("first-up")
            if parse_time(t["at"]) >= injected and t["current"] != "healthy"
        ]
        assert child_down and up_down, why
        # The point of the story: the consumer's failure was seen first (a 4 s check needs 2 failures).
        assert parse_time(child_down[0]["at"]) < parse_time(up_down[0]["at"]), why
        assert up.actions() == 1, why
        assert self.states("first-up") == ["succeeded"], why
        assert child.actions() == 0, why
        assert self.guard.attempts("first-child") == [], why
        assert not [p for p in self.sink.for_component("first-child") if p.get("kind") == "firing"], why


class UpstreamRecoversAlone(Dependents):
    """Two upstreams that recover by themselves, each feeding a consumer that has a restart policy:
    alone-up has no recovery policy at all, noop-up a policy in dry-run (it records what it would do,
    and does nothing). Both answer 500 for a while, then recover on their own: nothing is ever run;
    noop-up's would-be action is recorded once (dry-run); the consumers were held the whole outage,
    long past their own thresholds, then released and closed by themselves, never notified; the
    upstreams' alerts were notified and resolved."""

    name = "upstream-alone"
    OUTAGE_S = 8.0
    PAIRS = (("alone-up", "alone-child"), ("noop-up", "noop-child"))

    def components(self) -> None:
        for up_name, child_name in self.PAIRS:
            up = self.workload(up_name)
            child = self.workload(child_name)
            child.set("upstream", f"http {up.url}")
            if up_name == "noop-up":
                self.add(up, dry_run=True)
            else:
                self.add(up, heal=False)
            self.add(child, depends_on=[up_name])

    def play(self) -> None:
        names = [n for pair in self.PAIRS for n in pair]
        injected = now()
        for up_name, _ in self.PAIRS:
            self.workloads[up_name].set("mode", "down")
        self.wait(
            lambda: all(self.guard.transitions(n)[-1]["current"] != "healthy" for n in names),
            "every upstream and consumer to fail",
        )
        # The outage lasts until noop-up's would-be action is recorded (a busy guard decides late),
        # and at least OUTAGE_S: the consumers are held long past their own thresholds.
        self.wait(lambda: self.guard.attempts("noop-up"), "noop-up's dry-run", "noop-up")
        time.sleep(max(0.0, self.OUTAGE_S - (now() - injected).total_seconds()))
        why = self.why()()
        assert all(self.workloads[n].actions() == 0 for n in names), why  # held the whole outage
        recovered = now()
        for up_name, _ in self.PAIRS:
            self.workloads[up_name].set("mode", "ok")
        self.wait(lambda: all(self.settled(n) for n in names), "everyone to recover by themselves")
        time.sleep(3)
        why = self.why()()
        assert all(self.workloads[n].actions() == 0 for n in names), why
        assert self.guard.attempts("alone-up") == [], why
        assert [a["state"] for a in self.guard.attempts("noop-up")] == ["dry_run"], why
        assert self.alerts("noop-up", "healing-dry-run:"), why
        for up_name, child_name in self.PAIRS:
            self.untouched(child_name, why)
            up_health = self.alerts(up_name, "health:")
            assert up_health and all(a["status"] == "resolved" for a in up_health), why
            assert self.notified_firing(up_name), why
            assert self.alerts(child_name, "health:"), why  # it did fail: recorded, not notified
            closed = [
                t
                for t in self.guard.transitions(child_name)
                if parse_time(t["at"]) >= recovered and t["current"] == "healthy"
            ]
            assert closed, why  # it recovered after its upstream did, by itself


class UpstreamFailsDuringHeal(Dependents):
    """ver-child breaks on its own (ver-up fine) and is restarted; its restart boots for 3 s, inside its
    5 s grace. While it is being verified, ver-up starts answering 500 (its restart boots for 6 s):
    ver-child, up again, fails past its grace because of ver-up. That is no verdict on ver-child's
    restart: it ends ``cancelled``, ver-child is not restarted again when ver-up is back (it recovers
    by itself), no back-off, no "human needed"; ver-up is restarted once."""

    name = "upstream-during-heal"

    def components(self) -> None:
        up = self.workload("ver-up")
        up.set("boot_delay", "6")
        self.add(up, check=http_check(up, interval=0.5), grace_period=8)
        child = self.workload("ver-child")
        child.set("upstream", f"http {up.url}")
        child.set("boot_delay", "3")
        self.add(child, check=http_check(child, interval=0.5), depends_on=["ver-up"], grace_period=5)

    def play(self) -> None:
        up, child = self.workloads["ver-up"], self.workloads["ver-child"]
        injected = child.mode("down")
        self.wait(lambda: self.states("ver-child") == ["verifying"], "ver-child's restart to be verified")
        up_fault = up.mode("down")
        self.wait(
            lambda: self.verified_after("ver-up", up_fault) and self.settled("ver-up"),
            "ver-up restarted and verified",
        )
        self.wait(lambda: self.settled("ver-child"), "ver-child to recover by itself")
        time.sleep(3)  # a late second restart of ver-child would show now
        why = self.why()()
        assert self.failed_since("ver-child", up_fault), why  # it did fail because of ver-up
        assert child.actions() == 1, why
        [attempt] = self.guard.attempts("ver-child")
        assert attempt["state"] == "cancelled", why
        assert attempt["decision"]["no_verdict"] == "upstream", why
        assert up.actions() == 1 and self.states("ver-up") == ["succeeded"], why
        assert parse_time(self.guard.attempts("ver-up")[0]["started_at"]) >= injected, why
        assert not self.alerts("ver-child", "healing-"), why


TOPOLOGY = [Diamond, ChildSeenFirst, UpstreamRecoversAlone, UpstreamFailsDuringHeal]
