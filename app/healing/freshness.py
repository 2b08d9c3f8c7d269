"""Whether the checks' status an incident would be healed on is still news.

The checks' status stored for a component says what its last check saw. When nothing checked it for
a while — the guard was stopped (or killed) and served again, or the component was disabled and
enabled, or its check was edited — that status is from before the gap: a target fixed by hand
meanwhile still reads ``critical``. Acting on it restarts a healthy component. So while the status
the decision would use is the checks' own (the incident is the component's current one), it must
come from a check that ran after this guard started and after the component's last change; until
then nothing is decided, and the first check decides (healthy: the incident closes by itself;
failing: the periodic pass acts). An incident from another source (Alertmanager, a rule) is decided
on its own worst status and does not wait for a check.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.db.models import Component


async def status_predates_checks(
    session: AsyncSession, incident_id: int, component: Component, since: datetime
) -> bool:
    """True when the incident's status is the checks' and no check has run since ``since`` (the
    guard's start) and since the component was last changed (enabled again, or edited)."""
    from app.db.models import ComponentState

    if not component.check:
        return False
    state = await session.get(ComponentState, component.id)  # loaded with the component: no query
    if state is None or state.current_incident_id != incident_id:
        return False  # not the checks' incident: its own status decides
    checked = state.last_check_at
    changed = component.updated_at
    return checked is None or checked <= since or (changed is not None and checked <= changed)


async def last_check_passed(session: AsyncSession, incident_id: int, component: Component) -> bool:
    """True when the incident's status is the checks' and their last check passed: the status is
    held unhealthy only by hysteresis (more passes needed in a row, or failures still in the flap
    window). The target answers again, so an action now would restart a working component; the
    checks' own verdict comes next (healthy: the incident closes; failing again: the next pass acts)."""
    from app.db.models import ComponentState

    if not component.check:
        return False
    state = await session.get(ComponentState, component.id)  # loaded with the component: no query
    if state is None or state.current_incident_id != incident_id:
        return False  # not the checks' incident: its own status decides
    return state.consecutive_successes > 0
