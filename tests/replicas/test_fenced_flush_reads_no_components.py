"""With leases (Postgres), a result flush's fence reads the lease rows of the components it writes,
locked until its commit; a lease row goes with its component (ON DELETE CASCADE), so the fence also
tells which components exist until then: the flush sends no read of the components of its own (a
round trip less on the reaction's path), and a deletion waits for its commit."""

from __future__ import annotations

import asyncio

from sqlalchemy import delete, event, select

from app.checks.base import CheckResult, Outcome
from app.db.models import CheckResultRecord, Component
from app.monitoring.tracked import Observation
from tests.db_locks import waiting_on_a_lock
from tests.replicas.conftest import add_components, replicas


async def _delete(guard, cid: int) -> None:
    async with guard.session() as session:
        await session.execute(delete(Component).where(Component.id == cid))


async def test_a_deletion_waits_for_the_fenced_writes(pg_url, tmp_path):
    async with replicas(pg_url, tmp_path, [None]) as (a,):
        (cid,) = await add_components(a, 1)
        await a.manager.run_once()
        async with a.session() as flush:
            assert await a.manager.fence_live_writes(flush, {cid}) == ({cid}, True)
            deleting = asyncio.create_task(_delete(a, cid))
            while not await waiting_on_a_lock(a.runtime.engine):
                assert not deleting.done(), deleting  # the component must outlive the fenced writes
                await asyncio.sleep(0.02)
            assert not deleting.done()
        await deleting
        async with a.session() as session:
            assert await a.manager.fence_live_writes(session, {cid}) == (set(), True)


async def test_the_result_flush_reads_no_components_under_the_fence(pg_url, tmp_path):
    async with replicas(pg_url, tmp_path, [None]) as (a,):
        (cid,) = await add_components(a, 1)
        await a.manager.run_once()
        scheduler = a.runtime.monitoring.scheduler
        await scheduler.open()
        try:
            await scheduler.refresh()
            assert cid in scheduler.tracked
            sent: list[str] = []

            def note(_connection, _cursor, statement, *_args) -> None:
                sent.append(" ".join(statement.split()))

            engine = a.runtime.engine.sync_engine
            event.listen(engine, "before_cursor_execute", note)
            try:
                scheduler.writer.add(
                    Observation(cid, "tcp", CheckResult(Outcome.DOWN, None, "refused", conclusive=True))
                )
                assert await scheduler.writer.flush_all() == 1
            finally:
                event.remove(engine, "before_cursor_execute", note)
            assert any("FOR KEY SHARE" in s for s in sent), sent  # fenced
            # (the dependency graph's read of the incident it opens apart)
            assert not [s for s in sent if s.startswith("SELECT components.id FROM components")], sent
            async with a.session() as session:
                stored = (
                    await session.execute(
                        select(CheckResultRecord.detail).where(CheckResultRecord.component_id == cid)
                    )
                ).scalars()
                assert list(stored) == ["refused"]
        finally:
            await scheduler.close()
