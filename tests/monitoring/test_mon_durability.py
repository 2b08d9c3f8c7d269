"""No acknowledged check result is lost: not while the database is locked, not when a flush fails,
not at shutdown. Rows stored == checks run (the scheduler counts a check once its result is buffered)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading

import asyncpg
from prometheus_client import generate_latest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from app.db.models import CheckResultRecord
from app.monitoring import result_writer as writer_module
from tests.monitoring.conftest import add_component, mon_settings, monitored

COMPONENTS = 20


@contextlib.asynccontextmanager
async def write_locked(db_url: str):
    """Another connection holds the write lock on check_results (SQLite: the database) meanwhile."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        locked, release = threading.Event(), threading.Event()

        def hold() -> None:
            conn = sqlite3.connect(url.database, isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")
            locked.set()
            release.wait(10)
            conn.execute("COMMIT")
            conn.close()

        holder = threading.Thread(target=hold)
        holder.start()
        await asyncio.to_thread(locked.wait, 10)
        try:
            yield
        finally:
            release.set()
            await asyncio.to_thread(holder.join, 10)
    else:
        conn = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False))
        tx = conn.transaction()
        await tx.start()
        await conn.execute("LOCK TABLE check_results IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            await tx.rollback()
            await conn.close()


async def stored(guard) -> int:
    async with guard.session() as session:
        return (await session.execute(select(func.count()).select_from(CheckResultRecord))).scalar_one()


async def add_components(guard, scheduler, url: str) -> None:
    for i in range(COMPONENTS):
        await add_component(guard, f"svc-{i:02d}", {"kind": "http", "url": url, "interval": 0.2})
    await scheduler.refresh()


async def start_checking(guard, scheduler, url: str | None = None) -> None:
    if url is not None:
        await add_components(guard, scheduler, url)
    scheduler.start_background()
    for cid in list(scheduler.entries):
        scheduler.request_check(cid)


async def wait_for(predicate, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_shutdown_while_a_flush_waits_for_the_lock_loses_nothing(db_url, tmp_path, http_target):
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        await add_components(guard, scheduler, http_target.url("/ok"))
        async with write_locked(db_url):
            await start_checking(guard, scheduler)
            await wait_for(lambda: scheduler.checks_run >= 2 * COMPONENTS)
            await asyncio.sleep(1.0)  # the flusher (every 0.5 s) is now blocked on the lock with a batch
            closing = asyncio.create_task(scheduler.close())
            await asyncio.sleep(0.5)  # shutdown starts while that batch is still being written
        await closing
        assert scheduler.checks_run >= 2 * COMPONENTS
        assert await stored(guard) == scheduler.checks_run
        assert scheduler.dropped_results == 0 and scheduler.stats()["buffered_results"] == 0


async def test_failed_flushes_are_retried_with_the_buffer_kept(db_url, tmp_path, http_target, monkeypatch):
    real_write, failures = writer_module.write_batch, {"left": 3}

    async def flaky_write(*args, **kwargs):
        if failures["left"] > 0:
            failures["left"] -= 1
            raise OperationalError("INSERT INTO check_results ...", {}, Exception("database is locked"))
        return await real_write(*args, **kwargs)

    monkeypatch.setattr(writer_module, "write_batch", flaky_write)
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        await start_checking(guard, scheduler, http_target.url("/ok"))
        await wait_for(lambda: scheduler.flush_failures >= 3 and scheduler.checks_run >= 3 * COMPONENTS)
        await wait_for(lambda: scheduler.stats()["buffered_results"] == 0)  # a later flush wrote them all
        await scheduler.close()
        assert await stored(guard) == scheduler.checks_run
        assert scheduler.dropped_results == 0
        assert all(status == "healthy" for status in guard.runtime.component_health.values())


async def test_drops_past_the_cap_are_counted_and_exported(db_url, tmp_path, http_target, monkeypatch):
    async def failing_write(*args, **kwargs):
        raise OperationalError("INSERT INTO check_results ...", {}, Exception("database is locked"))

    monkeypatch.setattr(writer_module, "write_batch", failing_write)
    monkeypatch.setattr(writer_module, "MAX_BUFFER", 10)
    monkeypatch.setattr(writer_module, "SHUTDOWN_FLUSH_S", 0.3)
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        await start_checking(guard, scheduler, http_target.url("/ok"))
        await wait_for(lambda: scheduler.dropped_results > 0)
        await scheduler.close()
        assert scheduler.stats()["buffered_results"] == 0
        assert scheduler.dropped_results == scheduler.checks_run  # nothing could be written: all counted
        text = generate_latest(guard.runtime.metrics.registry).decode()
        assert f"pipeline_guard_results_dropped_total {float(scheduler.checks_run)}" in text
