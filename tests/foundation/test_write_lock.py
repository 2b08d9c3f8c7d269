"""``hold_write_lock``: a decision read under it cannot be changed by another writer before it commits
(SQLite's driver otherwise reads outside any transaction until the first write). Both dialects: on
Postgres it is a no-op and the budget row's FOR UPDATE does the same job."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from app.db.engine import create_engine, create_sessionmaker
from app.db.models.healing import HealingBudget
from app.db.session import hold_write_lock, session_scope
from app.db.types import utcnow
from app.healing import budgets
from tests.conftest import make_settings


async def test_a_writer_waits_for_a_decision_under_the_lock(db_url, tmp_path):
    engine = create_engine(make_settings(db_url, tmp_path))
    sessions = create_sessionmaker(engine)
    try:
        async with session_scope(sessions) as setup:
            await budgets.load_budget(setup, "w")
        writer_done = asyncio.Event()

        async def writer() -> None:  # another transaction records a cooldown meanwhile
            async with session_scope(sessions) as other:
                budget = await budgets.load_budget(other, "w")
                budget.cooldown_until = utcnow() + timedelta(minutes=10)
            writer_done.set()

        async with session_scope(sessions) as deciding:
            await hold_write_lock(deciding)
            first = await budgets.load_budget(deciding, "w")
            assert first.cooldown_until is None
            task = asyncio.create_task(writer())
            await asyncio.sleep(0.3)
            # The writer cannot commit while the decision holds the lock (SQLite) or the row (Postgres).
            assert not writer_done.is_set()
            again = await deciding.get(HealingBudget, "w", populate_existing=True)
            assert again.cooldown_until is None  # what the decision reads stays what it read
        await asyncio.wait_for(task, 30)
        async with session_scope(sessions) as after:
            assert (await budgets.load_budget(after, "w", lock=False)).cooldown_until is not None
    finally:
        await engine.dispose()
