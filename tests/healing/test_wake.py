"""The healing loop's wake-up: hand-overs name incidents (each once, in order), `set()` asks for a
whole pass, and one wait serves both."""

from __future__ import annotations

import asyncio

from app.healing.wake import MAX_HANDED_OVER, Wake


async def test_hand_overs_are_taken_once_in_order_beside_a_pass():
    wake = Wake()
    wake.hand_over(7)
    wake.hand_over(3)
    wake.hand_over(7)
    await asyncio.wait_for(wake.wait(), 1)
    assert wake.take() == ([7, 3], False)
    assert not wake.is_set()
    wake.set()
    wake.hand_over(9)
    assert wake.take() == ([9], True)
    assert wake.take() == ([], False)


async def test_hand_overs_nobody_takes_become_one_pass():
    wake = Wake()
    for incident_id in range(MAX_HANDED_OVER + 5):
        wake.hand_over(incident_id)
    incidents, sweep = wake.take()
    assert sweep and len(incidents) <= MAX_HANDED_OVER


async def test_a_periodic_pass_with_nothing_to_settle_does_not_take_the_decision_lock(healing):
    """The pass's housekeeping and reconciler only read when nothing is due, beside the decisions: a
    hand-over is never queued behind them then. When something is due they take their turn."""
    from datetime import timedelta

    from app.db.models.healing import HealingBudget
    from app.db.types import utcnow

    engine = healing.engine
    async with engine._lock:  # a decision in progress
        await asyncio.wait_for(engine.evaluate(), 10)  # nothing due: done without waiting for it
    async with healing.guard.session() as session:
        session.add(
            HealingBudget(
                component="w",
                backoff_level=0,
                failed_incidents=[],
                breaker_open=True,
                breaker_rearm_at=utcnow() - timedelta(seconds=1),
            )
        )
    async with engine._lock:
        pass_ = asyncio.create_task(engine.evaluate())
        await asyncio.sleep(0.5)
        assert not pass_.done()  # a breaker to re-arm: the sweep waits for its turn
    await asyncio.wait_for(pass_, 10)
    async with healing.guard.session() as session:
        assert not (await session.get(HealingBudget, "w")).breaker_open
