"""Property tests of the clock-driven budgets (app/healing/budgets.py, breaker.py, and the stick
window of lifecycle.relapsed) on a fake clock: random sequences of failed attempts, verified heals,
incidents healing gave up on and checks of the clock, against a small model of what the rules say.

- back-off: after the k-th failure in a row, nothing is decided until ``min(backoff_max,
  backoff_initial * 2^(k-1))`` after it, and from then on the back-off no longer blocks;
- cooldown: after a verified heal (and no failure since), blocked exactly until ``cooldown`` after it;
  a heal forgets the back-off;
- breaker: opens exactly when ``breaker_threshold`` given-up incidents fall within ``breaker_window``
  (the last one included), says so once, and re-arms ``breaker_window`` after it opened;
- stick window: a new incident is a relapse exactly when it opens within ``verify_timeout`` of the heal.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import example, given, settings
from hypothesis import strategies as st

from app.db.models.healing import HealingBudget
from app.healing import breaker, budgets, lifecycle
from app.healing.policy import Policy, backoff_delay

T0 = datetime(2026, 1, 1, tzinfo=UTC)

events = st.lists(
    st.tuples(
        st.sampled_from(["fail", "heal", "gave_up", "look"]),
        st.one_of(st.integers(0, 400), st.sampled_from([0, 1, 5, 10, 30, 300, 600])),  # boundaries
    ),
    min_size=1,
    max_size=40,
)
policies = st.builds(
    Policy,
    backoff_initial=st.sampled_from([0.0, 1.0, 10.0, 45.0]),
    backoff_max=st.sampled_from([1.0, 60.0, 300.0]),
    cooldown=st.sampled_from([0.0, 5.0, 300.0]),
    breaker_threshold=st.integers(1, 4),
    breaker_window=st.sampled_from([30.0, 600.0]),
)


def fresh_budget() -> HealingBudget:
    return HealingBudget(component="c", backoff_level=0, failed_incidents=[], breaker_open=False)


@settings(max_examples=300, deadline=None)
@given(policies, events)
@example(Policy(breaker_threshold=2, breaker_window=30.0), [("gave_up", 0), ("gave_up", 30), ("gave_up", 29)])
@example(Policy(backoff_initial=10.0, cooldown=5.0), [("fail", 0), ("look", 10), ("heal", 0), ("look", 5)])
def test_back_off_cooldown_and_breaker_follow_the_clock(policy, timeline):
    budget = fresh_budget()
    now = T0
    streak = 0  # failures in a row
    last_failure: datetime | None = None
    last_heal: datetime | None = None
    given_up: list[datetime] = []
    opened_at: datetime | None = None
    for kind, gap in timeline:
        now += timedelta(seconds=gap)
        if opened_at is not None and now >= opened_at + timedelta(seconds=policy.breaker_window):
            breaker.rearm(budget)  # what the periodic pass does once the window is over
            opened_at, given_up, streak, last_failure = None, [], 0, None
        if kind == "fail":
            delay = budgets.record_failure(budget, policy, now)
            streak += 1
            assert delay == min(policy.backoff_max, policy.backoff_initial * 2 ** (streak - 1))
            assert (
                delay
                == backoff_delay(streak, policy.backoff_initial, policy.backoff_max)
                <= policy.backoff_max
            )
            last_failure = now
        elif kind == "heal":
            budgets.record_success(budget, policy, now)
            streak, last_failure, last_heal = 0, None, now
        elif kind == "gave_up":
            opened = breaker.record_failed_incident(budget, policy, now)
            given_up.append(now)
            recent = [t for t in given_up if t > now - timedelta(seconds=policy.breaker_window)]
            should_open = opened_at is None and len(recent) >= policy.breaker_threshold
            assert opened == should_open, (recent, opened_at)
            if opened:
                opened_at = now
                assert breaker.rearm_time(budget) == now + timedelta(seconds=policy.breaker_window)
        # What blocks a decision now, per the model.
        backing_off = (
            last_failure is not None
            and streak > 0
            and now
            < last_failure
            + timedelta(seconds=backoff_delay(streak, policy.backoff_initial, policy.backoff_max))
        )
        cooling = (
            last_heal is not None
            and policy.cooldown > 0
            and now < last_heal + timedelta(seconds=policy.cooldown)
        )
        reason = budgets.blocked_reason(budget, now)
        if backing_off:
            assert reason is not None and reason.startswith("back-off"), reason
        elif cooling:
            assert reason is not None and reason.startswith("cooldown"), reason
        else:
            assert reason is None, reason
        assert budget.breaker_open == (opened_at is not None)


@given(st.integers(0, 600_000), st.integers(-10_000, 900_000), st.sampled_from([0.0, 1.0, 60.0, 300.0]))
def test_a_relapse_is_an_incident_inside_the_stick_window(healed_ms, opened_after_ms, stick_s):
    healed_at = T0 + timedelta(milliseconds=healed_ms)
    opened = healed_at + timedelta(milliseconds=opened_after_ms)
    inside = stick_s > 0 and 0 <= opened_after_ms < stick_s * 1000
    assert lifecycle.relapsed(healed_at, opened, stick_s) == inside
    assert not lifecycle.relapsed(None, opened, stick_s)
