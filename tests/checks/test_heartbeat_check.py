"""The heartbeat evaluation matrix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.checks.base import CheckConfigError, CheckContext, Outcome
from app.checks.heartbeat import HeartbeatCheck, HeartbeatState, evaluate_heartbeat

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
PARAMS = {"period_s": 60, "grace_s": 30, "max_runtime_s": 120, "min_runtime_s": 5}


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def evaluate(params=PARAMS, *, last_ping=None, status=None, start=None, duration=None, created=None):
    return evaluate_heartbeat(
        params,
        now=NOW,
        last_ping_at=last_ping,
        last_ping_status=status,
        last_start_at=start,
        last_duration_s=duration,
        created_at=created or ago(3600),
    )


@pytest.mark.parametrize(
    ("case", "kwargs", "outcome", "words"),
    [
        (
            "on time",
            {"last_ping": ago(30), "status": "success", "duration": 10},
            Outcome.UP,
            "last heartbeat",
        ),
        ("plain ping", {"last_ping": ago(30)}, Outcome.UP, "last heartbeat"),
        ("within grace", {"last_ping": ago(75)}, Outcome.UP, "within the grace"),
        ("late", {"last_ping": ago(100)}, Outcome.DOWN, "late"),
        ("missing, new check", {"created": ago(30)}, Outcome.UP, "waiting for the first"),
        ("missing, old check", {"created": ago(91)}, Outcome.DOWN, "no heartbeat received"),
        ("failed", {"last_ping": ago(10), "status": "fail"}, Outcome.DOWN, "reported failure"),
        ("too short", {"last_ping": ago(10), "status": "success", "duration": 2}, Outcome.DOWN, "shorter"),
        ("too long", {"last_ping": ago(10), "status": "success", "duration": 300}, Outcome.DOWN, "longer"),
        ("running", {"last_ping": ago(60), "status": "start", "start": ago(60)}, Outcome.UP, "in progress"),
        (
            "start without finish",
            {"last_ping": ago(200), "status": "start", "start": ago(200)},
            Outcome.DOWN,
            "has not finished",
        ),
    ],
)
def test_matrix(case, kwargs, outcome, words):
    result = evaluate(**kwargs)
    assert result.outcome is outcome, (case, result.detail)
    assert words in result.detail, (case, result.detail)
    assert result.observed_at == NOW


def test_start_without_max_runtime_uses_period_and_grace():
    params = {"period_s": 60, "grace_s": 30}
    assert evaluate(params, last_ping=ago(80), status="start").outcome is Outcome.UP
    assert evaluate(params, last_ping=ago(95), status="start").outcome is Outcome.DOWN


def test_invalid_params():
    with pytest.raises(CheckConfigError, match="check.period_s: is required"):
        evaluate({})
    with pytest.raises(CheckConfigError, match="min_runtime_s: must be smaller"):
        evaluate({"period_s": 60, "min_runtime_s": 10, "max_runtime_s": 5})


async def test_kind_uses_context_state():
    kind = HeartbeatCheck()
    assert kind.passive
    state = HeartbeatState(created_at=ago(3600), last_ping_at=ago(500), last_ping_status="success")
    result = await kind.run({"period_s": 60, "grace_s": 30}, CheckContext(heartbeat=state, now=NOW))
    assert result.outcome is Outcome.DOWN and "late" in result.detail
    no_state = await kind.run({"period_s": 60}, CheckContext())
    assert no_state.outcome is Outcome.DOWN


SCHEDULED = {"schedule": "*/1 * * * *", "grace_s": 30, "max_runtime_s": 120, "min_runtime_s": 5}


@pytest.mark.parametrize("params", [PARAMS, SCHEDULED], ids=["period", "schedule"])
@pytest.mark.parametrize(
    ("case", "kwargs", "conclusive"),
    [
        # What the run says of itself is its verdict: unhealthy at once, no streak of checks needed.
        ("failed", {"last_ping": ago(10), "status": "fail"}, True),
        ("too short", {"last_ping": ago(10), "status": "success", "duration": 2}, True),
        ("too long", {"last_ping": ago(10), "status": "success", "duration": 300}, True),
        # What the guard infers (late, stuck, never pinged) needs the failure streak as ever.
        ("late", {"last_ping": ago(200)}, False),
        ("missing", {"created": ago(300)}, False),
        ("stuck", {"last_ping": ago(200), "status": "start", "start": ago(200)}, False),
    ],
)
def test_a_run_outside_its_window_is_as_conclusive_as_a_fail(params, case, kwargs, conclusive):
    result = evaluate(params, **kwargs)
    assert result.outcome is Outcome.DOWN, (case, result.detail)
    assert result.conclusive is conclusive, (case, result.detail)
