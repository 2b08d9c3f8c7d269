"""The pure state machine: thresholds, N-of-M flapping, grace after recovery."""

from datetime import UTC, datetime, timedelta

from app.checks.base import Outcome
from app.monitoring import state_machine as sm

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T = sm.Thresholds(
    failure_threshold=3, success_threshold=2, flap_window=10, flap_threshold=5, recovery_grace_s=60
)


def run(outcomes: str, state=None, t=T, start=T0):
    state = state or sm.MachineState()
    decisions = []
    codes = {"u": Outcome.UP, "d": Outcome.DOWN, "g": Outcome.DEGRADED}
    for i, c in enumerate(outcomes):
        state, d = sm.observe(state, codes[c], start + timedelta(seconds=i), t)
        if d:
            decisions.append(d)
    return state, decisions


def test_failure_and_success_thresholds():
    state, ds = run("uu")
    assert state.status == "healthy" and [d.current for d in ds] == ["healthy"]
    state, ds = run("dd", state)
    assert state.status == "healthy" and not ds  # 2 < failure_threshold
    state, ds = run("d", state)
    assert state.status == "critical" and ds[0].reason.startswith("3 consecutive failed")
    state, ds = run("u", state)
    assert state.status == "critical"  # 1 < success_threshold
    state, ds = run("u", state)
    assert state.status == "healthy"


def test_degraded_results_give_degraded():
    state, _ = run("uu")
    state, _ = run("ggg", state)
    assert state.status == "degraded"
    state, _ = run("ddd", state)
    assert state.status == "critical"


def test_n_of_m_flapping_degrades_and_does_not_storm():
    state, _ = run("uu")
    # Alternating with failure_threshold 1 / success_threshold 1 would flip every check without N-of-M.
    t = sm.Thresholds(failure_threshold=1, success_threshold=1, flap_window=10, flap_threshold=3)
    state, ds = run("du" * 50, state, t=t)
    # Bounded by the flap threshold, not by the 100 results: after 3 bad of 10, only worsening is allowed.
    assert len(ds) <= 2 * t.flap_threshold, [(d.previous, d.current) for d in ds]
    _, more = run("du" * 50, state, t=t, start=T0 + timedelta(hours=1))
    assert not more
    assert state.status in ("degraded", "critical")
    # Once the window calms down, recovery happens once.
    state, ds = run("u" * 10, state, t=t)
    assert state.status == "healthy" and len(ds) == 1


def test_n_of_m_without_consecutive_failures():
    state, _ = run("uu")
    state, ds = run("udduddud", state)  # never 3 in a row, but 5 of the last 10 bad
    assert state.status == "degraded" and "flapping" in ds[0].reason


def test_grace_after_recovery_action_ignores_failures_then_verifies():
    state, _ = run("uuddd")
    assert state.status == "critical"
    now = T0 + timedelta(seconds=100)
    state, d = sm.begin_recovery(state, now, T, "restart")
    assert state.status == "recovering" and d.current == "recovering"
    state, ds = run("ddddd", state, start=now + timedelta(seconds=1))  # within the 60 s grace
    assert state.status == "recovering" and not ds and state.consecutive_failures == 0
    state, ds = run("uu", state, start=now + timedelta(seconds=10))
    assert state.status == "healthy" and "recovery verified" in ds[0].reason


def test_still_failing_after_grace_is_failed():
    state, _ = run("uuddd")
    now = T0 + timedelta(seconds=100)
    state, _ = sm.begin_recovery(state, now, T, "restart")
    state, ds = run("ddd", state, start=now + timedelta(seconds=61))
    assert state.status == "failed" and "still failing" in ds[0].reason
