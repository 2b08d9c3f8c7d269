"""How a heal goes on when the first try is not enough, told as stories: escalation across a policy's
strategies (a restart that does not fix, then a webhook to a real loopback "rerun" API), a batch job
watched by its heartbeat that relapses after a verified heal, and a component disabled while its
action is being verified (docs/LIFECYCLE.md rules 5, 7 and 9)."""

from __future__ import annotations

import time
from datetime import timedelta

from tests.scenarios.campaign import recovery
from tests.scenarios.harness import ActionReceiver, parse_time
from tests.scenarios.stories import Story, now

UNHEALTHY = ("degraded", "critical", "failed")


class Escalation(Story):
    """Two components whose fault survives a restart (``restart_mode keep``), each with a policy of two
    strategies: a restart, then a webhook to a loopback "rerun" API. For esc-fixed the webhook puts it
    right: restart failed, webhook succeeded, in that order, no "human needed". For esc-stuck the
    webhook is accepted and changes nothing: both fail, then (and only then) the "human needed" alert
    fires and is delivered; once a human fixes it, that alert and the health alert resolve."""

    name = "escalation"

    def components(self) -> None:
        self.receiver = ActionReceiver()
        for name, fixes, attempts in (("esc-fixed", True, 3), ("esc-stuck", False, 2)):
            workload = self.workload(name, restart_mode="keep")
            url = self.receiver.register(workload, fixes=fixes)
            restart = recovery(workload)["strategies"][0]
            webhook = {"kind": "webhook", "params": {"url": url, "method": "POST", "timeout": 5}}
            self.add(
                workload,
                strategies=[restart, webhook],
                max_attempts=attempts,
                breaker_threshold=5,
                verify_timeout=15,
            )

    def stop(self) -> None:
        super().stop()
        self.receiver.close()

    def delivered(self, name: str, kind: str, prefix: str) -> list[dict]:
        return [
            p
            for p in self.sink.for_component(name)
            if p.get("kind") == kind and p["alert"]["fingerprint"].startswith(prefix)
        ]

    def play(self) -> None:
        fixed, stuck = self.workloads["esc-fixed"], self.workloads["esc-stuck"]
        injected = now()
        fixed.set("mode", "down")
        stuck.set("mode", "down")
        self.wait(
            lambda: self.verified_after("esc-fixed", injected) and self.settled("esc-fixed"),
            "esc-fixed healed by its second strategy",
            "esc-fixed",
        )
        self.wait(lambda: self.alerts("esc-stuck", "healing-exhausted:"), "esc-stuck escalated", "esc-stuck")
        self.wait(
            lambda: self.delivered("esc-stuck", "firing", "healing-exhausted:"),
            "the human-needed alert delivered",
            "esc-stuck",
        )
        time.sleep(3)  # no third action may follow the escalation
        why = self.why()()
        attempts = self.guard.attempts("esc-fixed")
        assert [a["strategy"] for a in attempts] == ["restart", "webhook"], why
        assert [a["state"] for a in attempts] == ["failed", "succeeded"], why
        assert parse_time(attempts[1]["started_at"]) >= parse_time(attempts[0]["finished_at"]), why
        assert fixed.actions() == 1 and self.receiver.count("esc-fixed") == 1, why
        assert len({a["incident_id"] for a in attempts}) == 1, why
        assert not self.alerts("esc-fixed", "healing-exhausted:"), why
        assert not self.alerts("esc-fixed", "healing-breaker:"), why
        health = self.alerts("esc-fixed", "health:")
        assert health and all(a["status"] == "resolved" for a in health), why
        assert any(
            a.get("resolution_action") == f"re-run via webhook by healing attempt {attempts[1]['id']}"
            for a in health
        ), why
        assert len(self.delivered("esc-fixed", "firing", "health:")) == 1, (self.sink.kinds("esc-fixed"), why)
        assert self.delivered("esc-fixed", "resolved", "health:"), (self.sink.kinds("esc-fixed"), why)
        assert not self.delivered("esc-fixed", "firing", "healing-"), why

        attempts = self.guard.attempts("esc-stuck")
        assert [a["strategy"] for a in attempts] == ["restart", "webhook"], why
        assert [a["state"] for a in attempts] == ["failed", "failed"], why
        assert stuck.actions() == 1 and self.receiver.count("esc-stuck") == 1, why
        [exhausted] = self.alerts("esc-stuck", "healing-exhausted:")
        assert exhausted["status"] == "firing" and exhausted["severity"] == "critical", why
        # "Human needed" only once the last strategy failed, not after the first.
        assert parse_time(exhausted["first_seen"]) >= parse_time(attempts[1]["finished_at"]), why
        assert len(self.delivered("esc-stuck", "firing", "healing-exhausted:")) == 1, why
        assert self.guard.status("esc-stuck") in UNHEALTHY, why

        # A human puts it right: the escalation and the health alert resolve, and say so.
        stuck.set("mode", "ok")
        self.wait(lambda: self.settled("esc-stuck"), "esc-stuck healthy again", "esc-stuck")
        self.wait(
            lambda: self.delivered("esc-stuck", "resolved", "healing-exhausted:"),
            "the escalation's resolution delivered",
            "esc-stuck",
        )
        time.sleep(2)
        why = self.why()()
        [exhausted] = self.alerts("esc-stuck", "healing-exhausted:")
        assert exhausted["status"] == "resolved", why
        assert exhausted["resolution_action"] == "recovered without healing", why
        health = self.alerts("esc-stuck", "health:")
        assert health and all(a["status"] == "resolved" for a in health), why
        assert stuck.actions() == 1 and self.receiver.count("esc-stuck") == 1, why
        assert self.states("esc-stuck") == ["failed", "failed"], why


class BatchRelapse(Story):
    """A batch job watched by its heartbeat (3 s period) stops; it is restarted and the heal verified.
    It stops again inside the stick window (30 s): the heal turns into a failed one (relapsed), the new
    incident is healed; two actions, never two at once."""

    name = "batch-relapse"
    STICK_S = 30.0

    def components(self) -> None:
        job = self.workload("relapse-job", role="heartbeat")
        check = {
            "kind": "heartbeat",
            "period_s": 3.0,
            "grace_s": 1.0,
            "interval": 1.0,
            "failure_threshold": 2,
            "success_threshold": 1,
        }
        self.add(job, check=check, verify_timeout=self.STICK_S, breaker_threshold=5, cooldown=1)
        token = self.guard.post("/api/v1/components/relapse-job/ping-token")["token"]
        job.configure(guard=self.guard.base, token=token)
        job.start()

    def play(self) -> None:
        job = self.workloads["relapse-job"]
        injected = job.mode("silent")
        self.wait(
            lambda: self.verified_after("relapse-job", injected) and self.settled("relapse-job"),
            "the job restarted and verified",
        )
        healed = parse_time(self.guard.attempts("relapse-job")[0]["finished_at"])
        again = job.mode("silent")
        self.wait(
            lambda: self.states("relapse-job") == ["failed", "succeeded"] and self.settled("relapse-job"),
            "the relapse to fail the first heal and the new incident to be healed",
        )
        time.sleep(3)
        why = self.why()()
        first, second = self.guard.attempts("relapse-job")
        assert again < healed + timedelta(seconds=self.STICK_S), why
        assert "relapsed" in (first["detail"] or ""), why
        assert parse_time(first["decision"]["relapsed_at"]) < parse_time(first["decision"]["holds_until"]), (
            why
        )
        assert first["incident_id"] != second["incident_id"], why
        assert parse_time(second["started_at"]) >= again, why
        assert job.actions() == 2 and job.concurrent_actions() == 0, why
        assert not self.alerts("relapse-job", "healing-breaker:"), why
        assert not self.alerts("relapse-job", "healing-exhausted:"), why
        health = self.alerts("relapse-job", "health:")
        assert health and all(a["status"] == "resolved" for a in health), why


class DisabledWhileVerifying(Story):
    """dis-verify crashes; its restart boots slowly (6 s), so the attempt is verifying when an operator
    disables the component. The attempt ends ``cancelled`` (no verdict): not failed at its deadline,
    no back-off, no escalation, not a failure in the stats. Enabled again, it is healthy: the incident
    closes, no second action."""

    name = "disabled-verify"
    VERIFY_S = 8.0

    def components(self) -> None:
        self.add(
            self.workload("dis-verify", boot_delay=6),
            grace_period=20,
            verify_timeout=self.VERIFY_S,
            breaker_threshold=1,
        )

    def play(self) -> None:
        w = self.workloads["dis-verify"]
        injected = w.mode("crash")
        self.wait(lambda: self.states("dis-verify") == ["verifying"], "the attempt to be verifying")
        self.patch("dis-verify", {"enabled": False})
        self.wait(lambda: self.states("dis-verify") == ["cancelled"], "the attempt cancelled")
        attempt = self.guard.attempts("dis-verify")[0]
        # Stay disabled past the verification's deadline: the attempt must not turn into a failure.
        deadline = parse_time(attempt["verify_deadline"])
        time.sleep(max(0.0, (deadline - now()).total_seconds() + 2))
        why = self.why()()
        attempt = self.guard.attempts("dis-verify")[0]
        assert attempt["state"] == "cancelled", why
        assert attempt["decision"]["no_verdict"] == "disabled", why
        assert "disabled while its action was being verified" in attempt["detail"], why
        self.patch("dis-verify", {"enabled": True})
        self.wait(lambda: self.settled("dis-verify"), "dis-verify healthy once enabled")
        time.sleep(3)
        why = self.why()()
        assert w.actions() == 1, why
        assert self.states("dis-verify") == ["cancelled"], why
        assert not self.alerts("dis-verify", "healing-"), why
        health = [a for a in self.alerts("dis-verify", "health:") if parse_time(a["first_seen"]) >= injected]
        assert health and all(a["status"] == "resolved" for a in health), why


ESCALATION = [Escalation, BatchRelapse, DisabledWhileVerifying]
