"""A healing claim under real leases on Postgres: what it reads under the component's budget lock (the
slots in use and the lease fence) comes with that lock, in one statement, and the fence read there
still refuses a lease that moved and still keeps another replica's take out until the claim commits."""

from __future__ import annotations

import asyncio

from sqlalchemy import event

from app.db.models import Component
from app.db.models.healing import HealingBudget
from app.healing.claim_reads import lock_budget_for_claim
from tests.db_locks import waiting_on_a_lock
from tests.healing.conftest import Healing, touch_argv
from tests.replicas.conftest import expire, replicas


def _table(statement: str) -> str:
    """The statement's verb and table (a SELECT's outer FROM, past the subqueries of its columns)."""
    words = statement.replace('"', "").replace("(", " ( ").replace(")", " ) ").split()
    if words[0] != "SELECT":
        return " ".join(words[:3])
    depth = 0
    for i, word in enumerate(words):
        depth += (word == "(") - (word == ")")
        if depth == 0 and word == "FROM":
            return f"SELECT {words[i + 1]}"
    return statement


async def _held_component(guard, tmp_path) -> tuple[Healing, int]:
    healing = Healing(guard)
    created = await healing.add_component(
        "worker", {"strategies": [{"kind": "restart", "argv": touch_argv(tmp_path / "ran")}]}
    )
    async with guard.session() as session:  # as after the component's first heal
        session.add(HealingBudget(component="worker", backoff_level=0, failed_incidents=[]))
    await guard.manager.run_once()
    assert guard.manager.epoch_for(created["id"]) is not None
    return healing, created["id"]


async def test_a_claim_reads_its_slots_and_fence_with_the_budget_lock(pg_url, tmp_path):
    async with replicas(pg_url, tmp_path, [None]) as (a,):
        healing, _ = await _held_component(a, tmp_path)
        incident = await healing.open_incident("worker")
        seen: list[str] = []

        def note(_connection, _cursor, statement, *_args) -> None:
            seen.append(_table(statement))

        engine = a.runtime.engine.sync_engine
        event.listen(engine, "before_cursor_execute", note)
        try:
            assert len(await healing.engine.react([incident])) == 1
        finally:
            event.remove(engine, "before_cursor_execute", note)
        await healing.engine.drain(timeout=30)
        # The incident with its component and attempts; the status it opened with (not its component's
        # current incident here); silences; the budget, locked, with the slots in use and the lease
        # fence; the attempt. Each a round trip the reaction waits for.
        assert seen == [
            "SELECT healing_incidents",
            "SELECT incidents",
            "SELECT silences",
            "SELECT healing_budgets",
            "INSERT INTO healing_attempts",
        ], seen
        [attempt] = await healing.attempts()
        assert attempt.started_at is not None and attempt.acting_at is not None


async def test_a_claim_is_refused_when_its_lease_moved_in_the_database(pg_url, tmp_path):
    """The local deadline has not passed, so only the fence read in the claim's transaction can stop it."""
    async with replicas(pg_url, tmp_path, [None, None]) as (a, b):
        healing, cid = await _held_component(a, tmp_path)
        await expire(a)
        await b.manager.run_once()
        assert b.manager.epoch_for(cid) is not None and a.manager.epoch_for(cid) is not None
        incident = await healing.open_incident("worker")
        assert await healing.engine.react([incident]) == []
        assert await healing.attempts() == []


async def test_a_take_waits_for_the_claim_that_read_the_fence(pg_url, tmp_path):
    async with replicas(pg_url, tmp_path, [None, None]) as (a, b):
        _, cid = await _held_component(a, tmp_path)
        claim = a.session()
        session = await claim.__aenter__()
        try:
            row = await session.get(Component, cid)
            _, reads = await lock_budget_for_claim(session, a.runtime.settings.healing, row, {}, a.manager)
            assert reads is not None and reads.fenced
            await expire(a)  # A's lease expires in the database (its renewals stopped)
            take = asyncio.create_task(b.manager.run_once())
            while not await waiting_on_a_lock(a.runtime.engine):
                assert not take.done(), take  # B must not get the lease while A's claim is in flight
                await asyncio.sleep(0.02)
            assert not take.done()
        finally:
            await claim.__aexit__(None, None, None)  # commits A's claim
        await take
        assert b.manager.epoch_for(cid) is not None
