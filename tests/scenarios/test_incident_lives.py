"""Whole incident lives, many at once: one real guard per dialect, one real workload per fault pattern,
every fault injected together (see campaign.py), each component's life asserted from the API.

Speeds are compared against generous bounds only (3x the issue's yardstick), so a loaded machine does
not fail them; the measured figures are printed in the run's summary.
"""

from __future__ import annotations

import pytest

from tests.scenarios.campaign import build, run_campaign
from tests.scenarios.harness import FIGURES, Figures, GuardProcess, NotificationSink, guard_config

pytestmark = [pytest.mark.scenarios, pytest.mark.timeout(420)]
SLACK = 3.0  # measured <= SLACK x bound


@pytest.fixture(scope="module")
def campaign(scenario_db):
    url, workdir = scenario_db
    guard = GuardProcess(url, workdir / "guard", config=guard_config())
    sink = NotificationSink()
    scenarios = build(workdir / "workloads", guard)
    try:
        guard.start()
        run_campaign(guard, sink, scenarios)
        received = len(sink.received)
    finally:
        guard.stop()
        for scenario in scenarios.values():
            scenario.workload.stop()
        sink.close()
    del sink.received[received:]  # only what the guard sent while the campaign ran
    for scenario in scenarios.values():
        FIGURES.append(
            Figures(
                dialect=guard.dialect,
                scenario=scenario.name,
                detection_s=scenario.detection_s(),
                mttr_s=scenario.mttr_s(),
                bound_s=round(scenario.bound_s(), 2),
                actions=scenario.workload.actions(),
                outcome=("TIMED OUT in " + scenario.stage) if scenario.timed_out else scenario.stage,
                notes=[
                    ",".join(a["state"] for a in scenario.view.attempts) or "no attempts",
                    *scenario.notes(),
                ],
            )
        )
    return scenarios, sink, guard


def life(scenario) -> str:
    """A component's incident life, for assertion messages."""
    v = scenario.view
    lines = [
        (
            f"{scenario.name}: stage {scenario.stage}{' (timed out)' if scenario.timed_out else ''}, "
            f"injected {scenario.injected_at}, actions run {scenario.workload.actions()}"
        )
    ]
    lines += [
        f"  transition {t['at']} {t['previous']} -> {t['current']} (incident {t['incident_id']}): "
        f"{t['reason']}"
        for t in v.transitions
    ]
    lines += [
        f"  attempt {a['id']} #{a['attempt_number']} incident {a['incident_id']} {a['state']} "
        f"{a['started_at']}..{a['finished_at']}: {a['detail']}"
        for a in v.attempts
    ]
    lines += [
        f"  alert {a['fingerprint']} {a['severity']} {a['status']}: {a['message']} "
        f"[{a.get('resolution_action')}]"
        for a in v.alerts
    ]
    return "\n".join(lines)


def assert_healed_once(scenario, *, detection_bound: float | None = None) -> None:
    """Detected within bound, one action, verified, healthy, no relapse or false flapping afterwards."""
    story = life(scenario)
    assert not scenario.timed_out, story
    detection = scenario.detection_s()
    assert detection is not None, story
    assert detection <= SLACK * (detection_bound or scenario.detection_bound()), story
    assert scenario.workload.actions() == 1, story
    assert [a["state"] for a in scenario.view.attempts] == ["succeeded"], story
    mttr = scenario.mttr_s()
    assert mttr is not None and mttr <= SLACK * scenario.bound_s(), story
    assert scenario.transitions_after_heal() == [], story
    incidents = {t["incident_id"] for t in scenario.view.transitions_since(scenario.injected_at)}
    assert len(incidents - {None}) == 1, story
    health = scenario.view.health_alerts()
    assert health and all(a["status"] == "resolved" for a in health), story
    assert any("healing attempt" in (a.get("resolution_action") or "") for a in health), story
    assert scenario.view.status == "healthy", story


def test_crash_is_detected_restarted_once_and_verified(campaign):
    scenarios, sink, _ = campaign
    crash = scenarios["crash"]
    assert_healed_once(crash)
    assert sink.kinds("crash")["firing"] >= 1, sink.for_component("crash")


def test_hang_is_bounded_by_the_checks_own_timeout(campaign):
    assert_healed_once(campaign[0]["hang"])


def test_slow_boot_is_covered_by_the_policys_grace(campaign):
    slow_boot = campaign[0]["slow-boot"]
    assert_healed_once(slow_boot)
    assert not any(t["current"] == "failed" for t in slow_boot.view.transitions), life(slow_boot)


def test_silent_heartbeat_is_detected_and_the_job_restarted(campaign):
    assert_healed_once(campaign[0]["heartbeat"])


def test_relapse_after_a_verified_heal_is_seen_within_one_threshold(campaign):
    relapse = campaign[0]["relapse"]
    story = life(relapse)
    assert not relapse.timed_out, story
    second = relapse.marks["second_fault"]
    detection = relapse.detection_s(second)
    assert detection is not None and detection <= SLACK * relapse.detection_bound(), story
    # The first heal may count as failed (it relapsed within the stick window); the second must hold.
    assert relapse.workload.actions() == 2, story
    assert len(relapse.view.attempts) == 2 and relapse.view.attempts[-1]["state"] == "succeeded", story
    mttr = relapse.mttr_s(second)
    assert mttr is not None and mttr <= SLACK * relapse.bound_s(), story
    assert relapse.transitions_after_heal() == [], story
    assert relapse.view.status == "healthy", story


def test_degraded_is_not_restarted_by_the_default_policy(campaign):
    degraded = campaign[0]["degraded"]
    story = life(degraded)
    assert not degraded.timed_out, story
    detection = degraded.detection_s()
    assert detection is not None and detection <= SLACK * degraded.detection_bound(), story
    assert degraded.view.first(degraded.injected_at, {"degraded"}) is not None, story
    assert degraded.workload.actions() == 0, story
    assert degraded.view.attempts == [], story
    assert not any(t["current"] in ("critical", "failed", "recovering") for t in degraded.view.transitions), (
        story
    )
    assert degraded.view.status == "healthy", story
    # The incident it opened was closed by the recovery on its own, not by healing.
    assert not any("healing attempt" in (a.get("resolution_action") or "") for a in degraded.view.alerts), (
        story
    )


def test_flapping_target_escalates_instead_of_being_healed_forever(campaign):
    flap = campaign[0]["flap"]
    story = life(flap)
    assert not flap.timed_out, story
    assert flap.view.escalations(), story
    assert all(a["severity"] == "critical" for a in flap.view.escalations()), story
    # Each incident has at most max_attempts (2) actions and the breaker opens after one: a few at most,
    # and none once the guard has said a human is needed.
    assert 1 <= flap.workload.actions() <= 4, story
    assert flap.workload.actions() == flap.marks["actions_at_escalation"], story


def test_failing_restart_escalates_and_opens_the_breaker(campaign):
    scenarios, sink, _ = campaign
    failing = scenarios["failing-restart"]
    story = life(failing)
    assert not failing.timed_out, story
    assert failing.detection_s() is not None and failing.detection_s() <= SLACK * failing.detection_bound(), (
        story
    )
    assert failing.workload.actions() == 2, story  # max_attempts
    assert [a["state"] for a in failing.view.attempts] == ["failed", "failed"], story
    assert failing.workload.actions() == failing.marks["actions_at_escalation"], story
    prefixes = {a["fingerprint"].split(":")[0] for a in failing.view.escalations()}
    assert prefixes == {"healing-exhausted", "healing-breaker"}, story
    assert all(a["severity"] == "critical" and a["status"] == "firing" for a in failing.view.escalations()), (
        story
    )
    assert failing.view.status in ("critical", "failed"), story
    assert sink.for_component("failing-restart"), "the webhook channel heard nothing about the escalation"


def test_restart_that_does_not_fix_fails_within_the_policys_grace_and_escalates(campaign):
    no_fix = campaign[0]["restart-no-fix"]
    story = life(no_fix)
    assert not no_fix.timed_out, story
    assert no_fix.workload.actions() == 2, story  # max_attempts
    assert [a["state"] for a in no_fix.view.attempts] == ["failed", "failed"], story
    verdicts = no_fix.verdict_s()
    assert verdicts and all(v <= SLACK * no_fix.verdict_bound() for v in verdicts), (verdicts, story)
    assert no_fix.workload.actions() == no_fix.marks["actions_at_escalation"], story
    assert all(a["severity"] == "critical" for a in no_fix.view.escalations()), story


def test_external_alertmanager_alert_causes_exactly_one_action(campaign):
    external = campaign[0]["external"]
    story = life(external)
    assert not external.timed_out, story
    assert external.marks["actions_before_resolve"] == 1, story
    assert external.workload.actions() == 1, story
    assert len(external.view.attempts) == 1 and external.view.attempts[0]["state"] == "succeeded", story
    assert external.detection_s() is not None and external.detection_s() <= SLACK * 2 + 2, story
    # Its own checks never failed and the action's own effects open no incident of their own: every
    # transition and health alert belongs to the one incident the Alertmanager alert opened.
    incident = external.view.attempts[0]["incident_id"]
    assert {t["incident_id"] for t in external.view.transitions} <= {None, incident}, story
    assert {a["incident_id"] for a in external.view.health_alerts()} <= {incident}, story
    assert not any(t["current"] in ("critical", "failed") for t in external.view.transitions), story
    am = [a for a in external.view.alerts if a["source"] == "alertmanager"]
    assert len(am) == 1 and am[0]["status"] == "resolved", story
    assert external.view.status == "healthy", story


def test_healthy_control_sees_no_incident_no_action_no_alert(campaign):
    scenarios, sink, _ = campaign
    control = scenarios["control"]
    story = life(control)
    assert control.workload.actions() == 0, story
    assert control.view.attempts == [], story
    assert [(t["previous"], t["current"]) for t in control.view.transitions] == [("unknown", "healthy")], (
        story
    )
    assert control.view.alerts == [], story
    assert sink.for_component("control") == []
