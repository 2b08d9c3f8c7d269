"""A component whose last check passed is not acted on, although its status is still unhealthy: the
status is held there by hysteresis only (more passes needed in a row, or failures still in the flap
window), and the target answers again. The checks' next verdict decides: healthy closes the
incident, failing again lets the next pass act. docs/LIFECYCLE.md rule 13."""

from __future__ import annotations

from app.db.types import utcnow
from tests.healing.conftest import component_state, count_lines, touch_argv

HEARTBEAT = {"check": {"kind": "heartbeat", "period_s": 60}}  # checked: no loop runs in these tests


async def _checked(healing, name: str, incident_id: int, *, passes: int, failures: int = 0) -> None:
    """A check ran just now; the component is still ``critical`` with these counts in a row."""
    async with healing.guard.session() as session:
        state = await component_state(session, name)
        state.status, state.current_incident_id = "critical", incident_id
        state.consecutive_successes, state.consecutive_failures = passes, failures
        state.last_check_at = utcnow()


async def _checked_component_in_incident(healing, name: str, marker) -> int:
    """A checked component whose restart appends to ``marker``, with an open incident (its id)."""
    await healing.add_component(name, {"strategies": [{"kind": "restart", "argv": touch_argv(marker)}]})
    response = await healing.guard.client.patch(
        f"/api/v1/components/{name}", headers=await healing.guard.headers("admin"), json=HEARTBEAT
    )
    assert response.status_code == 200, response.text
    return await healing.open_incident(name)


async def test_no_action_while_the_last_check_passed_then_one_when_it_fails_again(healing, tmp_path):
    marker = tmp_path / "ran"
    incident = await _checked_component_in_incident(healing, "web", marker)

    # Answering again (two passes in a row), still critical while the flap window holds its failures.
    await _checked(healing, "web", incident, passes=2)
    assert await healing.step() == []
    assert count_lines(marker) == 0
    assert await healing.attempts() == []

    # Failing again: the next pass acts.
    await _checked(healing, "web", incident, passes=0, failures=1)
    assert len(await healing.step()) == 1
    assert count_lines(marker) == 1


async def test_an_incident_from_another_source_is_not_held_by_the_checks(healing, tmp_path):
    """An incident that is not the checks' own (Alertmanager, a rule) is decided on its own status,
    whatever the component's checks say."""
    marker = tmp_path / "ran"
    incident = await _checked_component_in_incident(healing, "api", marker)
    await _checked(healing, "api", incident + 1000, passes=3)  # the checks hold another incident
    assert len(await healing.step()) == 1
    assert count_lines(marker) == 1
