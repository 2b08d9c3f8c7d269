"""Manual heals (POST /api/v1/healing/{component}) go through the same claim, slot and rate bound as
automatic ones: an operator hammering the button gets one restart and clear 409/429 envelopes."""

from __future__ import annotations

import asyncio
import sys

from app.db.models.healing import HealingBudget
from app.db.types import utcnow
from tests.healing.conftest import count_lines, touch_argv


def _slow_touch(path) -> list[str]:
    return touch_argv(path, "import time", "time.sleep(0.5)")


def _envelope(response) -> dict:
    body = response.json()
    assert set(body["error"]) >= {"type", "message", "details", "timestamp"}, body
    return body["error"]


async def test_fifty_quick_manual_heals_run_one_restart(healing, tmp_path):
    marker = tmp_path / "ran"
    await healing.add_component(
        "w", {"strategies": [{"kind": "restart", "argv": _slow_touch(marker)}], "cooldown": "10m"}
    )
    headers = await healing.guard.headers("operator")
    codes = []
    for _ in range(50):
        response = await healing.guard.client.post("/api/v1/healing/w", headers=headers)
        codes.append(response.status_code)
        if response.status_code != 202:
            error = _envelope(response)
            assert error["type"] in ("conflict", "rate_limited") and "w" in error["message"], error
    assert codes[0] == 202 and codes.count(202) == 1, codes
    await healing.engine.drain(timeout=30)
    assert count_lines(marker) == 1
    # The heal succeeded: the cooldown holds the next one, with Retry-After.
    response = await healing.guard.client.post("/api/v1/healing/w", headers=headers)
    assert response.status_code == 429, response.text
    error = _envelope(response)
    assert "cooldown" in error["message"] and 500 < error["details"]["retry_after_s"] <= 600
    assert 500 < int(response.headers["Retry-After"]) <= 600
    assert count_lines(marker) == 1


async def test_concurrent_manual_heals_claim_once(healing, tmp_path):
    marker = tmp_path / "ran"
    await healing.add_component("w", {"strategies": [{"kind": "restart", "argv": _slow_touch(marker)}]})
    headers = await healing.guard.headers("operator")
    responses = await asyncio.gather(
        *[healing.guard.client.post("/api/v1/healing/w", headers=headers) for _ in range(10)]
    )  # within the connection pool (15)
    codes = sorted(r.status_code for r in responses)
    assert codes.count(202) == 1 and set(codes) <= {202, 409, 429}, codes
    await healing.engine.drain(timeout=30)
    assert count_lines(marker) == 1


async def test_manual_heal_respects_backoff_and_breaker(healing, tmp_path):
    await healing.add_component(
        "bad",
        {
            "strategies": [{"kind": "restart", "argv": [sys.executable, "-c", "raise SystemExit(2)"]}],
            "backoff_initial": "2m",
        },
    )
    headers = await healing.guard.headers("operator")
    assert (await healing.guard.client.post("/api/v1/healing/bad", headers=headers)).status_code == 202
    await healing.engine.drain(timeout=30)
    response = await healing.guard.client.post("/api/v1/healing/bad", headers=headers)
    assert response.status_code == 429 and "back-off" in _envelope(response)["message"]
    async with healing.guard.session() as session:
        budget = await session.get(HealingBudget, "bad")
        budget.backoff_until = None
        budget.breaker_open = True
        budget.breaker_rearm_at = utcnow()
    response = await healing.guard.client.post("/api/v1/healing/bad", headers=headers)
    assert response.status_code == 409 and "breakers/bad/reset" in _envelope(response)["message"]
    assert len(await healing.attempts(component="bad")) == 1
