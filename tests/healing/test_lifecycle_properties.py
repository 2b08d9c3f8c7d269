"""Property tests of the incident lifecycle (app/healing/lifecycle.py) together with the health state
machine it drives (app/monitoring/state_machine.py): random fault timelines, random policies and
actions that work or not, on a fake clock (one check per second). Whatever happens:

- no action is taken on a healthy component, and no action for a status the policy does not heal;
- at most one action at a time, and never more than ``max_attempts`` per incident;
- the action's own effects never open an incident (every incident opens degraded, critical or failed);
- a verified heal leaves no grace and no failure in the flap window behind;
- a failure the component reported itself (``x``: a batch job's ``fail`` ping) is never absorbed by
  the grace: while ``recovering`` it fails the action at once;
- once the target is healthy for good, every incident has ended healed, escalated or closed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from app.checks.base import Outcome
from app.healing import lifecycle as lc
from app.monitoring import state_machine as sm

T0 = datetime(2026, 1, 1, tzinfo=UTC)
# ``x``: down, and the component said so itself (``CheckResult.conclusive``: a job's ``fail`` ping).
OUTCOMES = {"u": Outcome.UP, "g": Outcome.DEGRADED, "d": Outcome.DOWN, "x": Outcome.DOWN}

segments = st.lists(
    st.tuples(st.sampled_from(["u", "g", "d", "x", "flap"]), st.integers(1, 40)), min_size=1, max_size=8
)
actions = st.lists(st.tuples(st.booleans(), st.booleans(), st.integers(0, 5)), min_size=1, max_size=6)
heal_ons = st.lists(st.sampled_from(lc.HEALABLE), min_size=1, max_size=3, unique=True)


class World:
    """The target: a fault timeline; an action that works brings it up (after its start-up) until
    the next fault segment."""

    def __init__(self, timeline: list[tuple[str, int]]):
        self.plan: list[str] = [c for c, n in timeline for _ in range(n)]
        self.fixed_until = -1

    def condition(self, i: int) -> str:
        if i >= len(self.plan):
            return "u"
        if i <= self.fixed_until:
            return "u"
        c = self.plan[i]
        return ("u" if i % 2 else "d") if c == "flap" else c

    def fix(self, i: int) -> None:
        end = i
        while end + 1 < len(self.plan) and self.plan[end + 1] == self.plan[i]:
            end += 1
        self.fixed_until = end


@settings(max_examples=300, deadline=None)
@given(
    timeline=segments,
    outcomes=actions,
    heal_on=heal_ons,
    failure_threshold=st.integers(1, 4),
    success_threshold=st.integers(1, 3),
    flap_window=st.integers(2, 10),
    flap_threshold=st.integers(2, 6),
    grace_s=st.integers(0, 12),
    max_attempts=st.integers(1, 4),
    verify_timeout_s=st.integers(3, 60),
)
def test_random_fault_timelines(
    timeline,
    outcomes,
    heal_on,
    failure_threshold,
    success_threshold,
    flap_window,
    flap_threshold,
    grace_s,
    max_attempts,
    verify_timeout_s,
):
    t = sm.Thresholds(
        failure_threshold=failure_threshold,
        success_threshold=success_threshold,
        flap_window=flap_window,
        flap_threshold=flap_threshold,
    )
    rules = lc.Rules(
        heal_on=tuple(heal_on),
        max_attempts=max_attempts,
        stick_s=verify_timeout_s,
        verify_timeout_s=verify_timeout_s,
    )
    life = lc.Lifecycle(rules)
    world = World(timeline)
    machine = sm.MachineState()
    action: dict | None = None  # the one in flight
    n_actions = 0
    settle = 20 * (failure_threshold + success_threshold + flap_window) + verify_timeout_s + 40
    horizon = len(world.plan) + settle

    for i in range(horizon):
        now = T0 + timedelta(seconds=i)
        # The action finishes: it worked or not; a working one restarts the target.
        if action is not None and i >= action["ends"]:
            episode = action["episode"]
            life.action_finished(action["ok"], now)
            if action["ok"] and life.current is episode:
                if action["fixes"]:
                    world.fix(i)
                machine, decision = sm.begin_recovery(machine, now, t, "restart", grace_s)
                if decision is not None:
                    assert decision.current == sm.RECOVERING
                    life.transition(decision.previous, decision.current, now)
            action = None
        code = "d" if action is not None and action["fixes"] else world.condition(i)
        if i >= len(world.plan) and action is None:
            code = "u"
        if action is not None and code != "u":
            decision = None  # the running action's own effect: held, as the recorder does
        else:
            was = machine.status
            machine, decision = sm.observe(machine, OUTCOMES[code], now, t, conclusive=code == "x")
            if code == "x" and was == sm.RECOVERING:
                assert decision is not None and decision.current == sm.FAILED, (
                    "the grace hid a reported failure"
                )
            if code == "x":
                assert machine.grace_until is None, "a reported failure left the grace running"
        if decision is not None:
            opened_before = life.current
            life.transition(decision.previous, decision.current, now)
            if opened_before is None and life.current is not None:
                assert life.current.status in lc.INCIDENT_STATUSES, "an incident opened without a fault"
                assert decision.current != sm.RECOVERING
            if decision.previous == sm.RECOVERING and decision.current == sm.HEALTHY:
                assert machine.grace_until is None, "the grace outlived the verified heal"
                assert set(machine.recent) <= {"u"}, "failures before the heal stay in the flap window"
        life.tick(now)
        if action is None and life.may_act(now):
            assert machine.status in sm.UNHEALTHY and machine.status != sm.HEALTHY, (
                "action on a healthy component"
            )
            assert life.current is not None and lc.should_heal(life.current.status, heal_on)
            ok, fixes, duration = outcomes[n_actions % len(outcomes)]
            life.action_started(now)
            assert life.current.attempts <= max_attempts
            action = {"ends": i + duration, "ok": ok, "fixes": fixes and ok, "episode": life.current}
            n_actions += 1
        elif action is not None:
            assert not life.may_act(now) or life.current is not action["episode"], "two actions at once"

    assert action is None
    assert life.current is None, f"incident still open: {life.current}"
    for episode in life.closed:
        assert episode.phase in lc.ENDINGS, episode
        assert episode.attempts <= max_attempts


@settings(max_examples=200, deadline=None)
@given(checks=st.integers(1, 200), heal_on=heal_ons)
def test_a_healthy_component_is_never_acted_on(checks, heal_on):
    t = sm.Thresholds()
    life = lc.Lifecycle(lc.Rules(heal_on=tuple(heal_on)))
    machine = sm.MachineState()
    for i in range(checks):
        now = T0 + timedelta(seconds=i)
        machine, decision = sm.observe(machine, Outcome.UP, now, t)
        if decision is not None:
            life.transition(decision.previous, decision.current, now)
        life.tick(now)
        assert not life.may_act(now)
    assert life.closed == [] and life.current is None


@given(healed_s=st.integers(0, 100), stick_s=st.integers(0, 100))
def test_a_relapse_is_a_new_incident_within_the_stick_window(healed_s, stick_s):
    healed = T0
    now = T0 + timedelta(seconds=healed_s)
    assert lc.relapsed(healed, now, stick_s) == (stick_s > 0 and healed_s < stick_s)


def test_an_action_on_a_healthy_component_opens_nothing():
    t = sm.Thresholds(failure_threshold=2)
    machine, _ = sm.observe(sm.MachineState(), Outcome.UP, T0, t)
    machine, decision = sm.begin_recovery(machine, T0, t, "restart", 30)
    assert decision is None and machine.status == sm.HEALTHY
    for i in range(1, 10):  # the restart's start-up, within the grace
        machine, decision = sm.observe(machine, Outcome.DOWN, T0 + timedelta(seconds=i), t)
        assert decision is None
    assert not lc.opens_incident(sm.HEALTHY, sm.RECOVERING)


def test_a_reported_failure_ends_the_grace_other_failures_do_not():
    """A rerun that reports its failure (``/fail``, a non-zero exit code) fails the action at once,
    within a long grace; a failure the checks merely saw (refused, late, missing) is start-up noise
    while the grace lasts."""
    t = sm.Thresholds(failure_threshold=3)
    machine = sm.MachineState()
    for i in range(3):
        machine, _ = sm.observe(machine, Outcome.DOWN, T0 + timedelta(seconds=i), t)
    assert machine.status == sm.CRITICAL
    at = T0 + timedelta(seconds=10)
    machine, decision = sm.begin_recovery(machine, at, t, "rerun", 60)
    assert decision is not None and machine.status == sm.RECOVERING
    for i in range(1, 6):  # seen failing within the grace: no verdict, nothing counted
        machine, decision = sm.observe(machine, Outcome.DOWN, at + timedelta(seconds=i), t)
        assert decision is None and machine.consecutive_failures == 0 and machine.recent == ""
    assert machine.grace_until == at + timedelta(seconds=60)
    machine, decision = sm.observe(
        machine, Outcome.DOWN, at + timedelta(seconds=6), t, "failed", conclusive=True
    )
    assert decision is not None and (decision.previous, decision.current) == (sm.RECOVERING, sm.FAILED)
    assert lc.verdict_after_action(decision.previous, decision.current) == lc.FAILED
    assert machine.grace_until is None and machine.recent == "d"
    # A pass ends the grace as before; a reported failure of a healthy component needs no streak.
    machine, decision = sm.observe(machine, Outcome.UP, at + timedelta(seconds=7), t)
    assert decision is not None and decision.current == sm.HEALTHY
    machine, decision = sm.observe(machine, Outcome.DOWN, at + timedelta(seconds=8), t, conclusive=True)
    assert decision is not None and decision.current == sm.CRITICAL
