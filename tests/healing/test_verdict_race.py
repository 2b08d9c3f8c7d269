"""Two verdicts on one verifying attempt at the same moment: the periodic pass ends it (its deadline
passed) while the component's recovery closes its incident. Whichever commits first decides; the
other sees the attempt no longer verifying and leaves it, so the attempt is never failed and then
overwritten as succeeded (counted in the strategy's statistics, back-off and breaker both ways).
Postgres only: SQLite's single writer already orders the two transactions."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text

from app.db.models.healing import HealingAttempt, HealingStrategyStat
from app.platform.events import IncidentClosed
from tests.healing.conftest import touch_argv


async def test_a_verdict_taken_meanwhile_is_not_overwritten(healing, tmp_path, db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("row locks: Postgres")
    await healing.add_component(
        "worker", {"strategies": [{"kind": "restart", "argv": touch_argv(tmp_path / "r")}]}
    )
    await healing.guard.client.patch(
        "/api/v1/components/worker",
        headers=await healing.guard.headers("admin"),
        json={"check": {"kind": "heartbeat", "period_s": 60}},
    )
    incident_id = await healing.open_incident("worker")
    assert len(await healing.step()) == 1
    [attempt] = await healing.attempts()
    assert attempt.state == "verifying"
    engine = healing.engine

    async with healing.guard.session() as deadline_pass:
        # The periodic pass has locked the attempt and ends it as failed (not committed yet).
        row = (
            await deadline_pass.execute(
                select(HealingAttempt).where(HealingAttempt.id == attempt.id).with_for_update()
            )
        ).scalar_one()
        await engine.attempts.finish_failed(
            deadline_pass, row, datetime.now(UTC), "failed", "verification timed out"
        )

        async def recovery_closes() -> None:
            async with healing.guard.session() as session:
                await engine.incidents.on_incident_closed(
                    IncidentClosed(
                        component="worker",
                        component_id=0,
                        incident_id=incident_id,
                        reason="healthy again",
                        at=datetime.now(UTC),
                    ),
                    session,
                )

        closing = asyncio.create_task(recovery_closes())
        # Wait until the closing transaction waits for the attempt's row lock.
        for _ in range(500):
            async with healing.guard.session() as probe:
                waiting = (
                    await probe.execute(
                        text(
                            "SELECT count(*) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                        )
                    )
                ).scalar_one()
            if waiting or closing.done():
                break
            await asyncio.sleep(0.02)
        await deadline_pass.commit()
    await closing

    [attempt] = await healing.attempts()
    assert attempt.state == "failed", attempt.detail
    async with healing.guard.session() as session:
        stats = (await session.execute(select(HealingStrategyStat))).scalars().all()
    assert [(s.successes, s.failures) for s in stats] == [(0, 1)]
