"""The healing engine's decisions: claim → act → verify → resolve, back-off, breaker, cooldown."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app.db.models.healing import HealingBudget
from app.db.types import utcnow
from app.healing.policy import backoff_delay
from tests.healing.conftest import PY, count_lines, touch_argv


def test_backoff_series_and_cap():
    series = [backoff_delay(level, 10, 300) for level in range(9)]
    assert series == [0, 10, 20, 40, 80, 160, 300, 300, 300]
    assert backoff_delay(100, 10, 300) == 300  # no overflow for huge levels


async def test_heal_verify_resolve(healing, tmp_path):
    marker = tmp_path / "ran"
    await healing.add_component("worker", {"strategies": [{"kind": "restart", "argv": touch_argv(marker)}]})
    incident = await healing.open_incident("worker")
    started = await healing.step()
    assert len(started) == 1 and count_lines(marker) == 1
    [attempt] = await healing.attempts()
    assert attempt.state == "verifying" and attempt.incident_id == incident and attempt.attempt_number == 1
    assert attempt.decision["mode"] == "ordered"
    assert await healing.step() == []  # verifying: nothing else runs
    await healing.close_incident("worker", incident)
    [attempt] = await healing.attempts()
    assert attempt.state == "succeeded" and attempt.time_to_recover_s is not None
    assert healing.resolved()[-1]["resolution_action"] == f"restarted by healing attempt {attempt.id}"
    assert count_lines(marker) == 1


async def test_failed_attempts_back_off_then_exhaust_and_breaker(healing, tmp_path):
    await healing.add_component(
        "bad",
        {
            "strategies": [{"kind": "restart", "argv": [PY, "-c", "raise SystemExit(3)"]}],
            "max_attempts": 2,
            "backoff_initial": "10s",
            "breaker_threshold": 2,
            "breaker_window": "1h",
        },
    )
    first = await healing.open_incident("bad")
    assert len(await healing.step()) == 1
    [attempt] = await healing.attempts()
    assert attempt.state == "failed" and attempt.decision["backoff_s"] == 10
    assert await healing.step() == []  # backing off
    async with healing.guard.session() as session:
        budget = await session.get(HealingBudget, "bad")
        assert budget.backoff_level == 1
        budget.backoff_until = utcnow() - timedelta(seconds=1)
    assert len(await healing.step()) == 1  # attempt 2
    attempts = await healing.attempts()
    assert [a.attempt_number for a in attempts] == [1, 2] and attempts[1].decision["backoff_s"] == 20
    assert await healing.step() == []  # max_attempts reached → exhausted at once, human needed
    assert healing.raised("healing exhausted: human needed")[-1]["incident_id"] == first
    # A second failed incident opens the breaker: critical alert, no more healing.
    await healing.open_incident("bad")
    for _ in range(3):
        async with healing.guard.session() as session:
            (await session.get(HealingBudget, "bad")).backoff_until = None
        await healing.step()
    async with healing.guard.session() as session:
        assert (await session.get(HealingBudget, "bad")).breaker_open
    breaker_alerts = [a for a in healing.raised() if a["fingerprint"] == "healing-breaker:bad"]
    assert len(breaker_alerts) == 1 and breaker_alerts[0]["severity"] == "critical"
    assert healing.runtime.metrics.circuit_open.labels("bad")._value.get() == 1
    third = await healing.open_incident("bad")
    assert await healing.step() == []
    # An operator re-arms it through the API; healing resumes.
    response = await healing.guard.client.post(
        "/api/v1/healing/breakers/bad/reset", headers=await healing.guard.headers("operator")
    )
    assert response.status_code == 200, response.text
    assert response.json()["was_open"] is True
    assert len(await healing.step()) == 1
    assert (await healing.attempts())[-1].incident_id == third
    assert healing.resolved()[-1]["resolution_action"].startswith("healing breaker re-armed by")


async def test_breaker_rearms_after_window(healing, tmp_path):
    await healing.add_component(
        "bad", {"strategies": [{"kind": "notify_only"}], "max_attempts": 1, "breaker_threshold": 1}
    )
    await healing.open_incident("bad")
    await healing.step()
    await healing.step()
    async with healing.guard.session() as session:
        budget = await session.get(HealingBudget, "bad")
        assert budget.breaker_open
        budget.breaker_rearm_at = utcnow() - timedelta(seconds=1)
        budget.backoff_until = None
    await healing.open_incident("bad")
    assert len(await healing.step()) == 1  # re-armed by the window, then decided
    async with healing.guard.session() as session:
        budget = (await session.execute(select(HealingBudget))).scalar_one()
        assert (
            budget.breaker_rearm_at is None or budget.breaker_open
        )  # re-armed, then (notify_only) re-opened


async def test_flapping_component_heal_that_relapses_is_failed_and_backs_off(healing, tmp_path):
    """A heal that does not hold (a new incident within the stick window, ``verify_timeout``) is a
    failed heal: back-off instead of cooldown, one action per back-off, never a storm."""
    marker = tmp_path / "ran"
    await healing.add_component(
        "flappy",
        {
            "strategies": [{"kind": "restart", "argv": touch_argv(marker)}],
            "cooldown": "5m",
            "backoff_initial": "5m",
        },
    )
    for _ in range(5):  # unhealthy → healed → unhealthy → ... within the stick window
        incident = await healing.open_incident("flappy")
        await healing.step()
        await healing.close_incident("flappy", incident)
    assert count_lines(marker) == 1
    [attempt] = await healing.attempts()
    assert attempt.state == "failed" and "relapsed" in attempt.detail
    async with healing.guard.session() as session:
        budget = await session.get(HealingBudget, "flappy")
        assert (
            budget.cooldown_until is None and budget.backoff_level == 1 and len(budget.failed_incidents) == 1
        )
        budget.backoff_until = utcnow() - timedelta(seconds=1)
    await healing.open_incident("flappy")
    await healing.step()
    assert count_lines(marker) == 2


async def test_disabled_healing_does_nothing(db_url, tmp_path):
    from tests.healing.conftest import healing_guard

    marker = tmp_path / "ran"
    async with healing_guard(db_url, tmp_path, enabled=False) as h:
        await h.add_component("w", {"strategies": [{"kind": "restart", "argv": touch_argv(marker)}]})
        await h.open_incident("w")
        assert await h.step() == []
        response = await h.guard.client.post("/api/v1/healing/w", headers=await h.guard.headers("operator"))
        assert response.status_code == 409
    assert count_lines(marker) == 0
