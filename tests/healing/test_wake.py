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
