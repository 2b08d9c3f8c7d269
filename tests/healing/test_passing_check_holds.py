"""A component whose last check passed is not acted on, although its status is still unhealthy: the
status is held there by hysteresis only (more passes needed in a row, or failures still in the flap
window), and the target answers again. The checks' next verdict decides: healthy closes the
incident, failing again lets the next pass act. docs/LIFECYCLE.md rule 12."""

from __future__ import annotations

from sqlalchemy import select

from app.db.models import Component, ComponentState
from app.db.types import utcnow
from tests.healing.conftest import count_lines, touch_argv

HEARTBEAT = {"check": {"kind": "heartbeat", "period_s": 60}}  # checked: no loop runs in these tests


async def _checked(healing, name: str, incident_id: int, *, passes: int, failures: int = 0) -> None:
    """A check ran just now; the component is still ``critical`` with these counts in a row."""
    async with healing.guard.session() as session:
        component_id = (
            await session.execute(select(Component.id).where(Component.name == name))
        ).scalar_one()
        state = await session.get(ComponentState, component_id)
        if state is None:
            state = ComponentState(component_id=component_id)
            session.add(state)
        state.status, state.current_incident_id = "critical", incident_id
        state.consecutive_successes, state.consecutive_failures = passes, failures
        state.last_check_at = utcnow()


async def test_no_action_while_the_last_check_passed_then_one_when_it_fails_again(healing, tmp_path):
    marker = tmp_path / "ran"
    await healing.add_component("web", {"strategies": [{"kind": "restart", "argv": touch_argv(marker)}]})
    response = await healing.guard.client.patch(
        "/api/v1/components/web", headers=await healing.guard.headers("admin"), json=HEARTBEAT
    )
    assert response.status_code == 200, response.text
    incident = await healing.open_incident("web")

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
    await healing.add_component("api", {"strategies": [{"kind": "restart", "argv": touch_argv(marker)}]})
    response = await healing.guard.client.patch(
        "/api/v1/components/api", headers=await healing.guard.headers("admin"), json=HEARTBEAT
    )
    assert response.status_code == 200, response.text
    incident = await healing.open_incident("api")
    await _checked(healing, "api", incident + 1000, passes=3)  # the checks hold another incident
    assert len(await healing.step()) == 1
    assert count_lines(marker) == 1
