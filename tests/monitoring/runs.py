"""Run ids in tests: a component's ping token, its stored pings and state, a run started long ago, a
recovery action in flight (docs/LIFECYCLE.md rule 12)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from app.db.models import ComponentState, HealingAttempt, HeartbeatPing
from app.db.types import utcnow


async def ping_token(guard, name):
    r = await guard.client.post(f"/api/v1/components/{name}/ping-token", headers=await guard.headers("admin"))
    assert r.status_code == 200, r.text
    return r.json()["token"]


async def stored_pings(guard):  # one component per test
    async with guard.session() as session:
        rows = (await session.execute(select(HeartbeatPing).order_by(HeartbeatPing.id))).scalars().all()
        return [(p.status, p.rid, p.duration_s) for p in rows]


async def component_state(guard, component_id):
    async with guard.session() as session:
        return (
            await session.execute(select(ComponentState).where(ComponentState.component_id == component_id))
        ).scalar_one()


async def backdate_start(guard, component_id, rid, seconds):
    """Run ``rid``'s ``/start`` (and the component's last start, when it is the last ping) ``seconds``
    ago: a run that has been going that long."""
    at = utcnow() - timedelta(seconds=seconds)
    async with guard.session() as session:
        await session.execute(
            update(HeartbeatPing)
            .where(HeartbeatPing.rid == rid, HeartbeatPing.status == "start")
            .values(received_at=at)
        )
        state = (
            await session.execute(select(ComponentState).where(ComponentState.component_id == component_id))
        ).scalar_one()
        if state.last_ping_status == "start":
            state.last_start_at = state.last_ping_at = at


async def action_in_flight(guard, component, seconds_ago):
    """A recovery action on the component, started ``seconds_ago`` and being verified."""
    now = utcnow()
    async with guard.session() as session:
        session.add(
            HealingAttempt(
                incident_id=1,
                incident_key="i:1",
                attempt_number=1,
                component=component["name"],
                component_id=component["id"],
                strategy="restart",
                state="verifying",
                decision={},
                started_at=now - timedelta(seconds=seconds_ago),
                acting_at=now - timedelta(seconds=seconds_ago),
                verify_deadline=now + timedelta(seconds=600),
            )
        )


async def assert_not_judged(guard, scheduler, component, before):
    """A finish of the run a recovery action replaced left the component's heartbeat state as it
    was (``before``), and the checks that follow keep it healthy, judged on the rerun alone."""
    from tests.monitoring.conftest import status_of

    after = await component_state(guard, component["id"])
    assert (after.last_ping_at, after.last_ping_status, after.last_duration_s) == (
        before.last_ping_at,
        before.last_ping_status,
        before.last_duration_s,
    )
    for _ in range(3):
        await scheduler.run_once()
    state = await status_of(guard, component["name"])
    assert state["status"] == "healthy" and "since the recovery action" in state["last_detail"], state
    assert (await component_state(guard, component["id"])).consecutive_failures == 0
