"""An attempt whose checks stop while it is being verified (its component disabled, or deleted) ends
``cancelled`` with no verdict: not a failure of the strategy, no back-off, nothing for the breaker;
the incident is decided again once the component is enabled. docs/LIFECYCLE.md, "Unverifiable"."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from app.db.models.healing import HealingAttempt, HealingBudget, HealingStrategyStat
from app.db.types import utcnow
from tests.healing.conftest import component_state, count_lines, touch_argv


async def _patch(healing, name: str, body: dict) -> None:
    response = await healing.guard.client.patch(
        f"/api/v1/components/{name}", headers=await healing.guard.headers("admin"), json=body
    )
    assert response.status_code == 200, response.text


HEARTBEAT = {"check": {"kind": "heartbeat", "period_s": 60}}  # checked: no loop runs in these tests


async def _past_deadline(healing) -> None:
    """The verification's deadline passes (as it would while the component stays disabled)."""
    async with healing.guard.session() as session:
        await session.execute(
            update(HealingAttempt)
            .where(HealingAttempt.state == "verifying")
            .values(verify_deadline=utcnow() - timedelta(seconds=1))
        )


async def _budget_and_stats(healing, name: str):
    async with healing.guard.session() as session:
        budget = await session.get(HealingBudget, name)
        stats = (
            (await session.execute(select(HealingStrategyStat).where(HealingStrategyStat.component == name)))
            .scalars()
            .all()
        )
        return (
            (budget.backoff_level, budget.backoff_until, list(budget.failed_incidents or []))
            if budget
            else None,
            [(s.successes, s.failures) for s in stats],
        )


async def test_disabled_while_verifying_is_cancelled_not_failed(healing, tmp_path):
    marker = tmp_path / "ran"
    await healing.add_component(
        "worker",
        {
            "strategies": [{"kind": "restart", "argv": touch_argv(marker)}],
            "backoff_initial": "5m",
            "breaker_threshold": 1,
        },
    )
    await _patch(healing, "worker", HEARTBEAT)
    incident = await healing.open_incident("worker")
    assert len(await healing.step()) == 1
    [attempt] = await healing.attempts()
    assert attempt.state == "verifying"

    await _patch(healing, "worker", {"enabled": False})
    await _past_deadline(healing)
    assert await healing.step() == []
    [attempt] = await healing.attempts()
    assert attempt.state == "cancelled", attempt.detail
    assert attempt.decision["no_verdict"] == "disabled"
    assert "disabled while its action was being verified" in attempt.detail
    assert attempt.finished_at is not None and attempt.slot is None
    budget, stats = await _budget_and_stats(healing, "worker")
    assert budget is None or (budget[0] == 0 and budget[1] is None and budget[2] == []), budget
    assert all(failures == 0 for _, failures in stats), stats
    assert not healing.raised("healing exhausted: human needed")
    response = await healing.guard.client.get(
        "/api/v1/healing/stats", headers=await healing.guard.headers("admin")
    )
    stats = response.json()
    assert stats["in_progress"] == 0 and stats["success_rate"] is None, stats
    assert [(s["strategy"], s["failed"], s["succeeded"]) for s in stats["per_strategy"]] == [
        ("restart", 0, 0)
    ]
    assert await healing.step() == []  # disabled: nothing decided
    assert count_lines(marker) == 1

    # Enabled again: nothing is decided on the status from before the action until a check has run;
    # once one has (still failing), the next attempt at once (no back-off to wait out).
    await _patch(healing, "worker", {"enabled": True})
    assert await healing.step() == []
    assert count_lines(marker) == 1
    await _checked(healing, "worker", "critical", incident)
    assert len(await healing.step()) == 1
    attempts = await healing.attempts()
    assert [a.state for a in attempts] == ["cancelled", "verifying"]
    assert attempts[1].incident_id == incident and attempts[1].attempt_number == 2
    assert count_lines(marker) == 2


async def test_deleted_while_verifying_is_cancelled_and_leaves_no_budget(healing, tmp_path):
    marker = tmp_path / "ran"
    await healing.add_component("gone", {"strategies": [{"kind": "restart", "argv": touch_argv(marker)}]})
    await healing.open_incident("gone")
    assert len(await healing.step()) == 1
    response = await healing.guard.client.delete(
        "/api/v1/components/gone", headers=await healing.guard.headers("admin")
    )
    assert response.status_code in (200, 204), response.text
    await _past_deadline(healing)
    await healing.step()
    [attempt] = await healing.attempts()
    assert attempt.state == "cancelled" and attempt.decision["no_verdict"] == "deleted", attempt.detail
    # A later component of the same name starts clean: no budget, no statistics from this one.
    assert await _budget_and_stats(healing, "gone") == (None, [])


async def test_deadline_passed_while_enabled_is_still_a_failure(healing, tmp_path):
    await healing.add_component(
        "slow", {"strategies": [{"kind": "restart", "argv": touch_argv(tmp_path / "ran")}]}
    )
    await healing.open_incident("slow")
    assert len(await healing.step()) == 1
    await _past_deadline(healing)
    await healing.step()
    [attempt] = (await healing.attempts())[:1]
    assert attempt.state == "failed" and "verification timed out" in attempt.detail
    budget, stats = await _budget_and_stats(healing, "slow")
    assert budget[0] == 1 and stats == [(0, 1)]


async def _checked(healing, name: str, status: str, incident_id: int) -> None:
    """A check ran just now and left the component ``status``."""
    await _set_status(healing, name, status, incident_id, checked=True)


async def _set_status(healing, name: str, status: str, incident_id: int, *, checked: bool = False) -> None:
    async with healing.guard.session() as session:
        state = await component_state(session, name)
        state.status, state.current_incident_id = status, incident_id
        if checked:
            state.last_check_at = utcnow()


async def test_enabled_again_while_recovering_waits_for_the_checks(healing, tmp_path):
    """The component is still ``recovering`` from the cancelled attempt's action when it is enabled
    again: its checks decide (healthy closes the incident), no second action before they fail."""
    marker = tmp_path / "ran"
    await healing.add_component("boot", {"strategies": [{"kind": "restart", "argv": touch_argv(marker)}]})
    await _patch(healing, "boot", HEARTBEAT)
    incident = await healing.open_incident("boot")
    assert len(await healing.step()) == 1
    await _set_status(healing, "boot", "recovering", incident)
    await _patch(healing, "boot", {"enabled": False})
    await healing.step()
    assert [a.state for a in await healing.attempts()] == ["cancelled"]
    await _patch(healing, "boot", {"enabled": True})
    await _checked(healing, "boot", "recovering", incident)  # checked, still in the action's grace
    assert await healing.step() == []  # recovering: the checks have not judged the action yet
    assert count_lines(marker) == 1
    await _checked(healing, "boot", "critical", incident)  # they did: recovering -> critical
    assert len(await healing.step()) == 1
    assert count_lines(marker) == 2
