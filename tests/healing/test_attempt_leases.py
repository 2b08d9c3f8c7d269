"""Attempts that cannot get stuck: a lease renewed while the action runs, a reconciler on every pass
of the healing loop, retries of attempts that never started, a database blip while acting, and the
in-progress figure that the stats and the Prometheus gauge agree on."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from datetime import timedelta

import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from app.db.models.healing import HealingAttempt, HealingBudget
from app.db.types import utcnow
from tests.faults.proxy import FaultProxy
from tests.healing.conftest import PY, count_lines, healing_guard, touch_argv, wait_until


def _only_healing(rt):
    from app.healing.loop import HealingLoop

    return [HealingLoop(rt.core, rt.healing.engine)]


def _gated_argv(marker, gate) -> list[str]:
    """Appends a line to ``marker``, then waits (at most 30 s) until ``gate`` exists."""
    code = (
        "import os, sys, time; open(sys.argv[1], 'a').write('x\\n'); d = time.time() + 30\n"
        "while not os.path.exists(sys.argv[2]) and time.time() < d: time.sleep(0.02)"
    )
    return [PY, "-c", code, str(marker), str(gate)]


async def _stats(h) -> dict:
    response = await h.guard.client.get("/api/v1/healing/stats", headers=await h.guard.headers("viewer"))
    assert response.status_code == 200, response.text
    return response.json()


def _gauge(h) -> float:
    return h.runtime.metrics.healing_in_progress._value.get()


async def _left_behind(h, incident: int, *, acted: bool, owner: str) -> int:
    """A `running` row whose lease ran out, as a dead or stuck owner leaves it."""
    past = utcnow() - timedelta(seconds=5)
    async with h.guard.session() as session:
        row = HealingAttempt(
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
            owner=owner,
            started_at=past,
            lease_until=past,
            acting_at=past if acted else None,
        )
        session.add(row)
        await session.flush()
        return row.id


async def test_reconciler_settles_an_attempt_whose_live_owner_stopped_renewing(db_url, tmp_path):
    """The owner process is alive (this very one) but no task drives the attempt any more: once its
    lease has run out the loop's periodic pass — not only the start — interrupts it and frees its slot."""
    marker = tmp_path / "ran"
    async with healing_guard(db_url, tmp_path, build_services=_only_healing) as h:
        await h.add_component(
            "w",
            {
                "strategies": [{"kind": "restart", "argv": touch_argv(marker)}],
                "backoff_initial": "1h",
                "backoff_max": "2h",
            },
        )
        await asyncio.sleep(0.3)  # the loop has started (and reconciled nothing)
        attempt_id = await _left_behind(h, 5001, acted=True, owner=h.engine.owner)
        await h.open_incident("w", 5001)

        async def settled():
            [row] = await h.attempts(id=attempt_id)
            return row if row.state != "running" else None

        row = await wait_until(settled, timeout=30)
        assert row.state == "interrupted" and row.slot is None and "not re-run" in row.detail
        assert row.decision["backoff_s"] == 3600
        stats = await _stats(h)
        assert stats["in_progress"] == 0 and _gauge(h) == 0
    assert count_lines(marker) == 0  # it may have acted: never re-run blindly


async def test_attempt_interrupted_before_acting_is_retried_at_once(db_url, tmp_path):
    """No committed "acting" marker: the action never started, so the incident is retried without
    back-off, and the lost attempt does not use up max_attempts."""
    marker = tmp_path / "ran"
    async with healing_guard(db_url, tmp_path, build_services=_only_healing) as h:
        await h.add_component(
            "w",
            {
                "strategies": [{"kind": "restart", "argv": touch_argv(marker)}],
                "max_attempts": 1,
                "backoff_initial": "1h",
                "backoff_max": "2h",
            },
        )
        attempt_id = await _left_behind(h, 5002, acted=False, owner=f"{socket.gethostname()}:1")
        await h.open_incident("w", 5002)
        await wait_until(lambda: count_lines(marker) == 1, timeout=30)
        first, second = await wait_until(lambda: _two(h), timeout=30)
        assert first.id == attempt_id and first.state == "interrupted" and first.decision["acted"] is False
        assert "before its action started" in first.detail
        assert second.attempt_number == 2 and second.state in ("verifying", "succeeded")
        assert second.acting_at is not None
        assert not h.raised("healing exhausted: human needed")
        async with h.guard.session() as session:
            assert (await session.get(HealingBudget, "w")).backoff_level == 0


async def _two(h):
    rows = await h.attempts(component="w")
    return rows if len(rows) == 2 and rows[1].state != "running" else None


@contextlib.contextmanager
def _database_blip(h, db_url: str, proxy: FaultProxy | None):
    """While armed, the database is away: the Postgres connection is cut (real sockets, through a
    proxy); on SQLite every statement on healing_attempts fails as a lost connection would."""
    armed = {"on": False, "failed": 0}

    def fail(conn, cursor, statement, *args):
        if armed["on"] and "healing_attempts" in statement:
            armed["failed"] += 1
            raise OperationalError(statement, None, Exception("database went away (test)"))

    engine = h.runtime.engine.sync_engine
    if proxy is None:
        event.listen(engine, "before_cursor_execute", fail)

    class Blip:
        def start(self):
            armed["on"] = True
            if proxy is not None:
                proxy.cut()

        def end(self):
            armed["on"] = False
            if proxy is not None:
                proxy.restore()

        @property
        def failed(self):
            return armed["failed"]

    try:
        yield Blip()
    finally:
        armed["on"] = False
        if proxy is None:
            event.remove(engine, "before_cursor_execute", fail)


async def test_database_blip_while_acting_neither_sticks_the_attempt_nor_stops_healing(db_url, tmp_path):
    marker, gate = tmp_path / "ran", tmp_path / "gate"
    proxy = None
    url = db_url
    if db_url.startswith("postgresql"):
        parsed = make_url(db_url)
        proxy = FaultProxy(parsed.host or "127.0.0.1", parsed.port or 5432)
        proxy.start()
        url = parsed.set(port=proxy.port).render_as_string(hide_password=False)
    try:
        async with healing_guard(
            url, tmp_path, build_services=_only_healing, max_concurrent=1, attempt_lease=2
        ) as h:
            await h.add_component(
                "w",
                {
                    "strategies": [{"kind": "restart", "argv": _gated_argv(marker, gate)}],
                    "backoff_initial": "1s",
                    "cooldown": "0s",
                },
            )
            await h.add_component(
                "v", {"strategies": [{"kind": "restart", "argv": touch_argv(tmp_path / "v")}]}
            )
            await h.open_incident("w")
            with _database_blip(h, url, proxy) as blip:
                await wait_until(lambda: count_lines(marker) == 1, timeout=30)  # acting
                blip.start()
                gate.touch()  # the action ends while the database is away
                await asyncio.sleep(3)  # longer than the lease: its renewals and the record fail meanwhile
                blip.end()
                assert proxy is not None or blip.failed > 0

            async def recorded():
                [row] = await h.attempts(component="w")
                return row if row.state != "running" else None

            row = await wait_until(recorded, timeout=60)
            assert row.state == "verifying", (row.state, row.detail)
            assert count_lines(marker) == 1  # recorded, not re-run
            stats = await _stats(h)
            assert stats["in_progress"] == 1 and _gauge(h) == 1
            # Healing goes on: the verifying attempt fails its deadline (slot freed), another incident heals.
            async with h.guard.session() as session:
                (await session.get(HealingAttempt, row.id)).verify_deadline = utcnow()
            await h.open_incident("v")
            await wait_until(lambda: count_lines(tmp_path / "v") == 1, timeout=30)

            async def settled():
                stats = await _stats(h)
                return stats if stats["by_state"].get("running", 0) == 0 else None

            stats = await wait_until(settled, timeout=30)
            assert stats["by_state"]["failed"] == 1 and stats["in_progress"] == 1 == _gauge(h)  # v verifies
    finally:
        if proxy is not None:
            proxy.close()


@pytest.mark.parametrize("what", ["budget", "breaker"])
async def test_deleted_component_leaves_no_budget_or_breaker(healing, what):
    await healing.add_component("gone", {"strategies": [{"kind": "notify_only"}]})
    async with healing.guard.session() as session:
        session.add(
            HealingBudget(
                component="gone",
                backoff_level=2,
                failed_incidents=[],
                breaker_open=what == "breaker",
                backoff_until=utcnow() + timedelta(hours=1),
            )
        )
    headers = await healing.guard.headers("admin")
    if what == "breaker":
        assert (await _stats(healing))["breakers_open"] == ["gone"]
    assert (await healing.guard.client.delete("/api/v1/components/gone", headers=headers)).status_code == 204
    assert (await _stats(healing))["breakers_open"] == []
    async with healing.guard.session() as session:
        assert await session.get(HealingBudget, "gone") is None
    # A new component of that name starts with a clean budget: a manual heal is not refused.
    await healing.add_component("gone", {"strategies": [{"kind": "notify_only"}]})
    response = await healing.guard.client.post(
        "/api/v1/healing/gone", headers=await healing.guard.headers("operator")
    )
    assert response.status_code == 202, response.text
