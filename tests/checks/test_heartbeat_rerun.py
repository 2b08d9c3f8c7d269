"""A batch job being healed is judged on its pings since the recovery action started
(docs/LIFECYCLE.md rule 12): the pure rule, as a matrix and as properties over random ping histories."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.checks.base import Outcome
from app.checks.heartbeat import evaluate_heartbeat, run_deadline
from app.healing.reruns import rerun_may_run_until
from app.monitoring import state_machine as sm

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
PERIOD = {"period_s": 60, "grace_s": 30}
BOUNDED = {"period_s": 60, "grace_s": 30, "max_runtime_s": 600}


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


ACTION = ago(20)


def judge(params=PERIOD, *, ping=None, status=None, action=ACTION, until=None, duration=None):
    return evaluate_heartbeat(
        params,
        now=NOW,
        last_ping_at=ping,
        last_ping_status=status,
        last_start_at=ping if status == "start" else None,
        last_duration_s=duration,
        created_at=ago(86400),
        action_at=action,
        verify_until=until,
    )


@pytest.mark.parametrize(
    ("case", "kwargs", "outcome", "pending", "words"),
    [
        # The failure that caused the action is not read again: no verdict while the window is open.
        ("stale fail", {"ping": ago(25), "status": "fail", "until": ago(-10)}, Outcome.UP, True, "waiting"),
        ("stale fail, action running", {"ping": ago(25), "status": "fail"}, Outcome.UP, True, "waiting"),
        ("stale success", {"ping": ago(25), "until": ago(-10)}, Outcome.UP, True, "waiting"),
        ("never pinged", {"until": ago(-10)}, Outcome.UP, True, "waiting"),
        ("window over", {"ping": ago(25), "status": "fail", "until": ago(1)}, Outcome.DOWN, False, "no ping"),
        (
            "rerun running",
            {"ping": ago(10), "status": "start", "until": ago(1)},
            Outcome.UP,
            True,
            "in progress",
        ),
        (
            "rerun past max_runtime",
            {"params": {**PERIOD, "max_runtime_s": 5}, "ping": ago(10), "status": "start"},
            Outcome.DOWN,
            False,
            "max_runtime",
        ),
        (
            "rerun past period + grace",
            {"ping": ago(95), "status": "start", "action": ago(100)},
            Outcome.DOWN,
            False,
            "has not finished",
        ),
        (
            "rerun failed",
            {"ping": ago(5), "status": "fail", "until": ago(-10)},
            Outcome.DOWN,
            False,
            "failure",
        ),
        ("rerun succeeded", {"ping": ago(5), "status": "success"}, Outcome.UP, False, "last heartbeat"),
        (
            "rerun too short",
            {"params": {**PERIOD, "min_runtime_s": 5}, "ping": ago(5), "status": "success", "duration": 1},
            Outcome.DOWN,
            False,
            "shorter",
        ),
        (
            "rerun too long",
            {"params": {**PERIOD, "max_runtime_s": 5}, "ping": ago(5), "status": "success", "duration": 9},
            Outcome.DOWN,
            False,
            "longer",
        ),
    ],
)
def test_rerun_matrix(case, kwargs, outcome, pending, words):
    result = judge(**kwargs)
    assert (result.outcome, result.pending) == (outcome, pending), (case, result.detail)
    assert words in result.detail, (case, result.detail)
    if kwargs.get("status") == "fail" and result.outcome is Outcome.DOWN and "no ping" not in result.detail:
        assert result.conclusive, case  # the job said so itself: no streak needed
    if "duration" in kwargs and result.outcome is Outcome.DOWN:
        assert result.conclusive, case  # a finished rerun's length is as final as its /fail


def test_scheduled_rerun_runs_until_the_next_run_plus_grace():
    params = {"schedule": "0 * * * *", "grace_s": 300}
    started = datetime(2026, 1, 1, 12, 10, tzinfo=UTC)
    assert run_deadline(params, started) == datetime(2026, 1, 1, 13, 5, tzinfo=UTC)
    result = evaluate_heartbeat(
        params,
        now=datetime(2026, 1, 1, 13, 0, tzinfo=UTC),
        last_ping_at=started,
        last_ping_status="start",
        last_start_at=started,
        last_duration_s=None,
        created_at=ago(86400),
        action_at=started - timedelta(seconds=1),
    )
    assert result.outcome is Outcome.UP and result.pending


def test_rerun_hold_needs_a_start_since_the_action():
    check = {"kind": "heartbeat", "interval": 1, **BOUNDED}
    action = ago(30)
    assert rerun_may_run_until(check, action, "start", ago(20)) == ago(20) + timedelta(seconds=600)
    assert rerun_may_run_until(check, action, "start", ago(40)) is None  # a run from before the action
    # Over, not judged yet by a check (which ends the verification when it reads the finish): held.
    assert rerun_may_run_until(check, action, "success", ago(20)) == ago(20) + timedelta(seconds=600)
    assert rerun_may_run_until(check, action, "fail", ago(20)) == ago(20) + timedelta(seconds=600)
    assert rerun_may_run_until(check, action, "success", ago(40)) is None  # a run from before the action
    assert rerun_may_run_until(check, None, "start", ago(20)) is None
    assert rerun_may_run_until({"kind": "http", "url": "http://x"}, action, "start", ago(20)) is None
    assert rerun_may_run_until({"kind": "heartbeat"}, action, "start", ago(20)) is None  # invalid: no period


# -- properties ----------------------------------------------------------------------------------

offsets = st.floats(min_value=-3600, max_value=3600, allow_nan=False)
statuses = st.sampled_from([None, "start", "success", "fail"])
params_st = st.fixed_dictionaries(
    {"period_s": st.floats(1, 3600), "grace_s": st.floats(0, 600)},
    optional={"max_runtime_s": st.floats(1, 3600), "min_runtime_s": st.floats(0, 0.5)},
)


@settings(max_examples=300, deadline=None)
@given(
    params=params_st,
    ping=st.none() | offsets,
    status=statuses,
    action=offsets,
    window=st.none() | st.floats(0, 3600),
    duration=st.none() | st.floats(0, 7200),
)
def test_only_pings_since_the_action_are_judged(params, ping, status, action, window, duration):
    """Whatever came before the action says nothing; a run since it is pending only while it may still
    end well; a finished run since it is judged exactly as without an action; without an action
    nothing is ever pending (services and jobs not being healed are unchanged)."""
    action_at = ago(action)
    ping_at = None if ping is None else ago(ping)
    until = None if window is None else action_at + timedelta(seconds=window)
    started = ping_at if status == "start" else None

    def run(with_action: bool):
        return evaluate_heartbeat(
            params,
            now=NOW,
            last_ping_at=ping_at,
            last_ping_status=status,
            last_start_at=started,
            last_duration_s=duration,
            created_at=ago(86400),
            action_at=action_at if with_action else None,
            verify_until=until if with_action else None,
        )

    judged, plain = run(True), run(False)
    assert not plain.pending
    if ping_at is None or ping_at < action_at:
        window_over = until is not None and until < NOW
        assert (judged.outcome, judged.pending) == (
            (Outcome.DOWN, False) if window_over else (Outcome.UP, True)
        )
    elif status == "start":
        assert judged.outcome is plain.outcome
        assert judged.pending == (plain.outcome is Outcome.UP)
        if judged.pending:
            assert run_deadline(params, ping_at) >= NOW
    else:
        # A finished run since the action is judged as without one, and its length outside
        # min/max runtime is as final as a /fail (conclusive).
        outside = plain.outcome is Outcome.DOWN and "last run took" in plain.detail
        assert (judged.outcome, judged.pending) == (plain.outcome, False)
        assert judged.conclusive == (plain.conclusive or outside), judged.detail
    # Never a verdict of health from a run that has not ended since the action.
    if judged.outcome is Outcome.UP and not judged.pending:
        assert ping_at is not None and ping_at >= action_at and status != "start"


@settings(max_examples=300, deadline=None)
@given(
    params=params_st,
    ping=st.none() | offsets,
    status=statuses,
    action=st.floats(min_value=1, max_value=3600, allow_nan=False),
    duration=st.none() | st.floats(0, 7200),
)
def test_a_rerun_that_reported_failure_is_not_waited_out(params, ping, status, action, duration):
    """The check's verdict on a rerun, folded into the health state machine within a long grace: a
    ``fail`` (or non-zero exit code) since the action, or a run since it that finished outside its
    min/max runtime, fails the action at once; a failure from before the action is never read as one;
    any other failure (late, running too long, no ping) waits for the grace."""
    action_at = ago(action)
    ping_at = None if ping is None else ago(ping)
    judged = judge(
        params,
        ping=ping_at,
        status=status,
        action=action_at,
        until=NOW + timedelta(seconds=60),
        duration=duration,
    )
    since = ping_at is not None and ping_at >= action_at
    late = ping_at is not None and (NOW - ping_at).total_seconds() > params["period_s"] + params["grace_s"]
    min_rt, max_rt = params.get("min_runtime_s"), params.get("max_runtime_s")
    outside = duration is not None and (
        (min_rt is not None and duration < min_rt) or (max_rt is not None and duration > max_rt)
    )
    finished_outside = status in (None, "success") and not late and outside
    assert judged.conclusive == (since and (status == "fail" or finished_outside)), judged.detail
    t = sm.Thresholds(failure_threshold=3)
    machine = sm.MachineState(status=sm.CRITICAL, status_since=ago(7200))
    machine, _ = sm.begin_recovery(machine, NOW - timedelta(seconds=1), t, "rerun", 600)
    if judged.pending:
        return  # no verdict: the recorder folds it into nothing
    machine, decision = sm.observe(
        machine, judged.outcome, NOW, t, judged.detail, conclusive=judged.conclusive
    )
    if judged.outcome is Outcome.UP:
        assert decision is not None and decision.current == sm.HEALTHY
    elif judged.conclusive:
        assert decision is not None and decision.current == sm.FAILED, judged.detail
    else:
        assert decision is None and machine.status == sm.RECOVERING, judged.detail


# -- a run's duration through the ping API -------------------------------------------------------

STARTED_S = 600  # the run's /start, backdated: a derived duration would be about this long


@pytest.mark.parametrize(
    ("case", "action_s", "attempt_state", "reported", "expected"),
    [
        # A stuck run's /start, an action in flight since, a success pinged without a duration: the
        # rerun's success, its length unknown; not the time since the stuck run's /start.
        ("start before the action in flight", 10, "verifying", None, None),
        ("start before the action still acting", 10, "running", None, None),
        # What the job reports itself still counts.
        ("reported by the job", 10, "verifying", 0.5, 0.5),
        # A /start since the action is the rerun's own: its duration counts.
        ("start since the action", STARTED_S + 100, "verifying", None, "derived"),
        # No action in flight: as ever.
        ("action over", 10, "succeeded", None, "derived"),
        ("no action", None, None, None, "derived"),
    ],
)
async def test_a_duration_from_a_start_before_the_action_is_not_recorded(
    guard, case, action_s, attempt_state, reported, expected
):
    from sqlalchemy import select, update

    from app.db.models import ComponentState, HealingAttempt
    from app.db.types import utcnow
    from tests.monitoring.conftest import add_component

    check = {"kind": "heartbeat", "period_s": 3600, "grace_s": 60, "max_runtime_s": 60}
    component = await add_component(guard, "job", check)
    admin = await guard.headers("admin")
    token = (await guard.client.post("/api/v1/components/job/ping-token", headers=admin)).json()["token"]

    async def ping(**body):
        r = await guard.client.post(
            "/api/v1/components/job/heartbeat", json=body, headers={"X-Ping-Token": token}
        )
        assert r.status_code == 200, r.text
        return r.json()

    await ping(status="start")
    now = utcnow()
    async with guard.session() as session:
        await session.execute(
            update(ComponentState)
            .where(ComponentState.component_id == component["id"])
            .values(
                last_start_at=now - timedelta(seconds=STARTED_S),
                last_ping_at=now - timedelta(seconds=STARTED_S),
            )
        )
        if action_s is not None:
            session.add(
                HealingAttempt(
                    incident_id=1,
                    incident_key="i:1",
                    attempt_number=1,
                    component="job",
                    component_id=component["id"],
                    strategy="restart",
                    state=attempt_state,
                    decision={},
                    started_at=now - timedelta(seconds=action_s),
                    acting_at=now - timedelta(seconds=action_s),
                )
            )
    body = {"status": "success"} if reported is None else {"status": "success", "duration_seconds": reported}
    answered = await ping(**body)
    async with guard.session() as session:
        state = (
            await session.execute(
                select(ComponentState).where(ComponentState.component_id == component["id"])
            )
        ).scalar_one()
    if expected == "derived":
        assert state.last_duration_s is not None and state.last_duration_s >= STARTED_S, case
    else:
        assert state.last_duration_s == expected, case
    assert answered["duration_seconds"] == state.last_duration_s, case
    if expected is None:
        # Judged on the rerun's success, during the verification and after it: healthy, not "longer
        # than max_runtime" because of a run from before the action.
        for action_at in (now - timedelta(seconds=action_s), None):
            judged = evaluate_heartbeat(
                check,
                now=utcnow(),
                last_ping_at=state.last_ping_at,
                last_ping_status=state.last_ping_status,
                last_start_at=state.last_start_at,
                last_duration_s=state.last_duration_s,
                created_at=ago(86400),
                action_at=action_at,
            )
            assert judged.outcome is Outcome.UP and not judged.pending, (case, judged.detail)
