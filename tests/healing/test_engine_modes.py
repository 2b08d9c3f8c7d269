"""Concurrency limits, dry-run, approval, interrupted attempts, learned ordering, manual trigger."""

from __future__ import annotations

import asyncio
import os
import random
import socket
from datetime import datetime, timedelta

from app.db.models.healing import HealingAttempt, HealingIncident
from app.db.types import utcnow
from app.healing import deciding, learning
from app.healing.policy import StrategyEntry
from tests.healing.conftest import PY, count_lines, healing_guard, touch_argv, wait_until


async def test_burst_of_20_failing_components_respects_limits(db_url, tmp_path):
    log = tmp_path / "concurrency.log"
    # Each action records start/end with timestamps so we can compute the overlap afterwards.
    code = (
        "import sys,time; f=open(sys.argv[1],'a'); f.write(f'start {time.time()}\\n'); f.flush(); "
        "time.sleep(0.3); f.write(f'end {time.time()}\\n')"
    )
    async with healing_guard(db_url, tmp_path, max_concurrent=3, max_concurrent_per_group=2) as h:
        for i in range(20):
            await h.add_component(
                f"c{i}",
                {
                    "strategies": [{"kind": "restart", "argv": [PY, "-c", code, str(log)]}],
                    "verify_timeout": "1h",
                },
                labels={"app": "etl" if i < 10 else f"solo{i}"},
            )
            await h.open_incident(f"c{i}")
        started = await h.step()
        assert len(started) == 3  # global cap; at most 2 of the 'etl' group
        rows = await h.attempts()
        assert sum(1 for r in rows if r.group_key == "app=etl") <= 2
        assert {r.state for r in rows} == {"verifying"}  # in flight until verified: slots stay held
        assert await h.step() == []  # still at the limit
        for row in rows:  # verified → slots freed → the next three
            await h.close_incident(row.component, row.incident_id)
        assert len(await h.step()) == 3
    events = sorted((float(t), kind) for kind, t in (line.split() for line in log.read_text().splitlines()))
    running = peak = 0
    for _, kind in events:
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    assert peak <= 3


async def test_dry_run_never_acts(db_url, tmp_path):
    marker = tmp_path / "ran"
    async with healing_guard(db_url, tmp_path, dry_run=True) as h:
        await h.add_component("w", {"strategies": [{"kind": "restart", "argv": touch_argv(marker)}]})
        await h.open_incident("w")
        for _ in range(3):
            assert await h.step() == []
        response = await h.guard.client.post("/api/v1/healing/w", headers=await h.guard.headers("operator"))
        assert response.status_code == 202 and response.json()["state"] == "dry_run"
        attempts = await h.attempts()
        assert [a.state for a in attempts] == ["dry_run", "dry_run"]
        assert "would run" in attempts[0].detail
        assert any(a["title"] == "healing dry-run" for a in h.raised())
    assert count_lines(marker) == 0


async def test_per_component_dry_run(healing, tmp_path):
    marker = tmp_path / "ran"
    await healing.add_component(
        "w", {"strategies": [{"kind": "restart", "argv": touch_argv(marker)}], "dry_run": True}
    )
    await healing.open_incident("w")
    await healing.step()
    assert [a.state for a in await healing.attempts()] == ["dry_run"] and count_lines(marker) == 0


async def test_approval_flow(healing, tmp_path):
    marker = tmp_path / "ran"
    await healing.add_component(
        "w",
        {
            "strategies": [{"kind": "restart", "argv": touch_argv(marker)}],
            "require_approval": True,
            "approval_timeout": "10m",
        },
    )
    headers = await healing.guard.headers("operator")
    viewer = await healing.guard.headers("viewer")
    await healing.open_incident("w")
    assert await healing.step() == []
    [pending] = await healing.attempts()
    assert pending.state == "pending_approval" and count_lines(marker) == 0
    assert (
        await healing.guard.client.post(f"/api/v1/healing/attempts/{pending.id}/approve", headers=viewer)
    ).status_code == 403
    response = await healing.guard.client.post(
        f"/api/v1/healing/attempts/{pending.id}/approve", headers=headers
    )
    assert response.status_code == 200, response.text
    await healing.engine.drain()
    assert count_lines(marker) == 1
    assert (await healing.attempts())[0].decided_by == "operator-user"
    # Reject: nothing runs, and healing stops for that incident.
    await healing.open_incident("w")
    await healing.step()
    pending = (await healing.attempts())[-1]
    response = await healing.guard.client.post(
        f"/api/v1/healing/attempts/{pending.id}/reject", headers=headers
    )
    assert response.status_code == 200 and response.json()["state"] == "rejected"
    assert await healing.step() == []
    assert count_lines(marker) == 1
    # Expiry: a proposal not approved in time expires and cannot be approved afterwards.
    await healing.open_incident("w")
    await healing.step()
    pending = (await healing.attempts())[-1]
    async with healing.guard.session() as session:
        (await session.get(HealingAttempt, pending.id)).approval_deadline = utcnow() - timedelta(seconds=1)
    await healing.step()
    assert (await healing.attempts(id=pending.id))[0].state == "expired"
    response = await healing.guard.client.post(
        f"/api/v1/healing/attempts/{pending.id}/approve", headers=headers
    )
    assert response.status_code == 409
    assert count_lines(marker) == 1


async def test_interrupted_attempt_is_not_repeated_on_restart(db_url, tmp_path):
    """A guard killed mid-action (its "acting" marker committed) leaves a `running` row; the next
    start marks it interrupted, applies back-off, and does not run the action again."""
    marker = tmp_path / "ran"
    async with healing_guard(db_url, tmp_path) as h:
        await h.add_component("w", {"strategies": [{"kind": "restart", "argv": touch_argv(marker)}]})
        incident = await h.open_incident("w")
        async with h.guard.session() as session:  # what a killed process leaves behind
            session.add(
                HealingAttempt(
                    incident_id=incident,
                    incident_key=f"i:{incident}",
                    attempt_number=1,
                    component="w",
                    strategy="restart",
                    strategy_index=0,
                    state="running",
                    trigger="auto",
                    description="",
                    decision={},
                    slot=0,
                    owner=f"{socket.gethostname()}:{_dead_pid()}",
                    started_at=utcnow(),
                    acting_at=utcnow(),
                    lease_until=utcnow(),
                )
            )
    async with healing_guard(db_url, tmp_path, build_services=_only_healing) as h:

        async def interrupted():
            return [a for a in await h.attempts() if a.state == "interrupted"]

        [attempt] = await wait_until(interrupted)
        await asyncio.sleep(1.5)  # a periodic pass and a wake-up pass have run meanwhile
        assert len(await h.attempts()) == 1
        assert attempt.state == "interrupted" and attempt.slot is None
        assert attempt.decision["backoff_s"] == 10
        assert await h.step() == []  # backing off: no blind re-run
    assert count_lines(marker) == 0


def _only_healing(rt):
    from app.healing.loop import HealingLoop

    return [HealingLoop(rt.core, rt.healing.engine)]


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_learned_ordering_never_picks_an_unlisted_strategy():
    entries = [StrategyEntry(0, "restart", {}), StrategyEntry(2, "webhook", {})]
    stats = {"0:restart": (1, 9, 10.0), "2:webhook": (9, 1, 900.0), "1:kubernetes": (1000, 0, 1.0)}
    rng = random.Random(7)
    chosen = {learning.choose(entries, stats, rng=rng)[0].key for _ in range(500)}
    chosen |= {learning.choose(entries, stats, method="ucb")[0].key for _ in range(50)}
    assert chosen <= {"0:restart", "2:webhook"}
    entry, why = learning.choose(entries, stats, rng=rng)
    assert why["mode"] == "thompson" and why["chosen"] == entry.key and len(why["candidates"]) == 2


async def test_learned_ordering_in_engine_explains_and_respects_admin_lists(db_url, tmp_path):
    marker = tmp_path / "ran"
    async with healing_guard(db_url, tmp_path, strategies=["restart", "notify_only"]) as h:
        await h.add_component(
            "w",
            {
                "learned_ordering": True,
                "strategies": [
                    {"kind": "webhook", "url": "https://ci.invalid/rerun"},  # not in healing.strategies
                    {"kind": "notify_only"},
                    {"kind": "restart", "argv": touch_argv(marker)},
                ],
            },
        )
        for _ in range(6):
            incident = await h.open_incident("w")
            await h.step()
            async with h.guard.session() as session:
                (await session.get(HealingIncident, incident)).outcome = "healed"
                from app.db.models.healing import HealingBudget

                budget = await session.get(HealingBudget, "w")
                budget.backoff_until = budget.cooldown_until = None
        attempts = await h.attempts()
        assert attempts and all(a.strategy in {"restart", "notify_only"} for a in attempts)
        assert all(a.decision["mode"] == "thompson" and a.decision["explanation"] for a in attempts)


async def test_manual_trigger_without_incident_and_stats(healing, tmp_path):
    marker = tmp_path / "ran"
    await healing.add_component("w", {"strategies": [{"kind": "restart", "argv": touch_argv(marker)}]})
    headers = await healing.guard.headers("operator")
    response = await healing.guard.client.post(
        "/api/v1/healing/w", headers=headers, json={"strategy": "command"}
    )
    assert response.status_code == 202, response.text
    assert response.json()["incident_id"] is None and response.json()["trigger"] == "manual"
    await healing.engine.drain()
    assert count_lines(marker) == 1
    attempt = (
        await healing.guard.client.get(f"/api/v1/healing/attempts/{response.json()['id']}", headers=headers)
    ).json()
    assert attempt["state"] == "succeeded"
    page = (
        await healing.guard.client.get(
            "/api/v1/healing/attempts?component=w&state=succeeded", headers=headers
        )
    ).json()
    assert page["total"] == 1
    stats = (await healing.guard.client.get("/api/v1/healing/stats", headers=headers)).json()
    assert stats["total_attempts"] == 1 and stats["success_rate"] == 1.0
    assert stats["per_strategy"][0]["strategy"] == "restart"
    assert (await healing.guard.client.post("/api/v1/healing/nope", headers=headers)).status_code == 404
    metrics = (await healing.guard.client.get("/metrics")).text
    assert 'healing_attempts_total{component="w",outcome="succeeded",strategy="restart"} 1.0' in metrics
    assert (
        "pipeline_guard_healing_attempts_total" in metrics and "pipeline_guard_healing_in_progress" in metrics
    )


async def test_silence_pauses_healing(healing, tmp_path):
    marker = tmp_path / "ran"
    await healing.add_component("w", {"strategies": [{"kind": "restart", "argv": touch_argv(marker)}]})
    headers = await healing.guard.headers("admin")
    response = await healing.guard.client.post(
        "/api/v1/silences",
        headers=headers,
        json={
            "component": "w",
            "ends_at": (utcnow() + timedelta(hours=1)).isoformat(),
            "comment": "maintenance",
        },
    )
    assert response.status_code in (200, 201), response.text
    await healing.open_incident("w")
    assert await healing.step() == []
    assert count_lines(marker) == 0


async def test_silence_is_judged_at_the_instant_the_attempt_records(healing, tmp_path, monkeypatch):
    """The decision's instant is the attempt's ``started_at``: a silence still open at that instant
    holds the action, however late the silence is looked up (a busy guard looks it up later)."""
    marker = tmp_path / "ran"
    await healing.add_component("w", {"strategies": [{"kind": "restart", "argv": touch_argv(marker)}]})
    headers = await healing.guard.headers("admin")
    response = await healing.guard.client.post(
        "/api/v1/silences", headers=headers, json={"component": "w", "duration": 1, "comment": "deploy"}
    )
    assert response.status_code == 201, response.text
    ends = datetime.fromisoformat(response.json()["ends_at"].replace("Z", "+00:00"))
    await healing.open_incident("w")
    while utcnow() <= ends:
        await asyncio.sleep(0.05)
    # The decision is taken just before the silence ended; it is looked up after.
    monkeypatch.setattr(deciding, "utcnow", lambda: ends - timedelta(milliseconds=10))
    assert await healing.step() == []
    assert count_lines(marker) == 0
    monkeypatch.undo()
    assert len(await healing.step()) == 1
    [attempt] = await healing.attempts()
    assert attempt.started_at >= ends
