"""The write side at fleet scale: bounded transactions, back-pressure, a status change written at
once, and the refresh's cheap change check."""

from __future__ import annotations

import asyncio
import json

from sqlalchemy import delete, func, select, update

from app.checks.base import CheckResult
from app.db.models import CheckResultRecord, Component, HealthTransitionRecord
from app.monitoring import result_writer as writer_module
from app.monitoring.tracked import Observation
from tests.monitoring.conftest import add_component, mon_settings, monitored


async def stored(guard, model=CheckResultRecord) -> int:
    async with guard.session() as session:
        return (await session.execute(select(func.count()).select_from(model))).scalar_one()


async def wait_for(predicate, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def three_components(guard, scheduler, url: str) -> list[int]:
    for i in range(3):
        await add_component(guard, f"svc-{i}", {"kind": "http", "url": url, "interval": 3600})
    await scheduler.refresh()
    return sorted(scheduler.tracked)


async def test_a_backlog_is_written_in_bounded_transactions(db_url, tmp_path, http_target, monkeypatch):
    monkeypatch.setattr(writer_module, "MAX_BATCH", 100)
    sizes: list[int] = []
    real_write = writer_module.write_batch

    async def counting_write(session, items, tracked, events, *rest):
        sizes.append(len(items))
        return await real_write(session, items, tracked, events, *rest)

    monkeypatch.setattr(writer_module, "write_batch", counting_write)
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        ids = await three_components(guard, scheduler, http_target.url("/ok"))
        for i in range(1050):
            scheduler.writer.add(Observation(ids[i % 3], "http", CheckResult.up("ok", 0.001)))
        assert await scheduler.writer.flush() == 100  # one flush, one bounded transaction
        assert scheduler.writer.buffered == 950
        assert await scheduler.flush() == 950  # the rest, in more bounded transactions
        assert sizes == [100] * 10 + [50]
        assert await stored(guard) == 1050


async def test_dispatch_waits_while_the_buffer_is_past_high_water(db_url, tmp_path, http_target, monkeypatch):
    monkeypatch.setattr(writer_module, "HIGH_WATER", 30)
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        ids = await three_components(guard, scheduler, http_target.url("/ok"))
        writer = scheduler.writer
        for i in range(29):
            writer.add(Observation(ids[i % 3], "http", CheckResult.up("ok", 0.001)))
        assert not writer.backlogged
        writer.add(Observation(ids[0], "http", CheckResult.up("ok", 0.001)))
        assert writer.backlogged
        waiting = asyncio.create_task(writer.wait_room())
        await asyncio.sleep(0.1)
        assert not waiting.done()  # the dispatcher would be held here
        await scheduler.flush()
        await asyncio.wait_for(waiting, 10)
        assert not writer.backlogged


async def test_a_result_that_changes_a_status_is_written_without_waiting_for_the_interval(
    db_url, tmp_path, http_target
):
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        # A flush interval and size that would hold results for an hour: only the status change flushes.
        scheduler.writer.flush_interval, scheduler.writer.flush_size = 3600, 10**6
        ids = await three_components(guard, scheduler, http_target.url("/ok"))
        await scheduler.run_once()  # first results: unknown -> healthy, written by run_once's flush
        transitions = await stored(guard, HealthTransitionRecord)
        scheduler.start_background()
        writer = scheduler.writer
        written = await stored(guard)
        writer.add(Observation(ids[0], "http", CheckResult.up("ok", 0.001)))  # steady: stays buffered
        writer.add(Observation(ids[1], "http", CheckResult.down("boom", 0.001)))  # 1 of 2 failures: no change
        await asyncio.sleep(0.3)
        assert writer.buffered == 2 and await stored(guard) == written
        writer.add(Observation(ids[1], "http", CheckResult.down("boom", 0.001)))  # the 2nd: critical

        async def transition_written() -> bool:
            return await stored(guard, HealthTransitionRecord) > transitions

        await wait_for(transition_written)
        assert scheduler.status_of(ids[1]) == "critical"
        assert writer.buffered == 0 and writer.urgent_flushes >= 1


async def test_idle_refresh_does_not_reread_the_registry_but_sees_every_change(db_url, tmp_path, http_target):
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        ids = await three_components(guard, scheduler, http_target.url("/ok"))
        watch = scheduler.registry_watch
        reads = watch.full_reads
        for _ in range(3):
            await scheduler.refresh()
        assert watch.full_reads == reads  # nothing changed: one aggregate row per tick

        admin = await guard.headers("admin")
        r = await guard.client.patch(
            "/api/v1/components/svc-0",
            headers=admin,
            json={"check": {"kind": "http", "url": http_target.url("/ok"), "interval": 60}},
        )
        assert r.status_code == 200
        await scheduler.refresh()
        assert scheduler.entries[ids[0]].interval == 60

        async with guard.session() as session:  # a write that bypasses the service (no version bump)
            await session.execute(update(Component).where(Component.id == ids[1]).values(enabled=False))
            await session.commit()
        await scheduler.refresh()
        assert ids[1] not in scheduler.entries and "svc-1" not in guard.runtime.component_health

        async with guard.session() as session:  # deleted behind the service's back
            await session.execute(delete(Component).where(Component.id == ids[2]))
            await session.commit()
        await scheduler.refresh()
        assert set(scheduler.tracked) == {ids[0]}
        await add_component(
            guard, "svc-new", {"kind": "http", "url": http_target.url("/ok"), "interval": 3600}
        )
        await scheduler.refresh()
        assert {t.name for t in scheduler.tracked.values()} == {"svc-0", "svc-new"}
        assert set(guard.runtime.component_health) <= {"svc-0", "svc-new"}


async def test_status_pages_the_fleet_and_counts_it_in_sql(db_url, tmp_path, http_target):
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        for i in range(7):
            await add_component(
                guard,
                f"svc-{i}",
                {"kind": "http", "url": http_target.url("/ok" if i % 3 else "/fail")},
                critical=i == 0,
            )
        r = await guard.client.post(
            "/api/v1/components", json={"name": "unchecked"}, headers=await guard.headers("admin")
        )
        assert r.status_code == 201
        for _ in range(2):  # failure_threshold 2
            await scheduler.run_once()
        viewer = await guard.headers("viewer")
        body = (
            await guard.client.get("/api/v1/status", headers=viewer, params={"limit": 3, "offset": 2})
        ).json()
        assert body["total"] == 7 and body["limit"] == 3 and body["offset"] == 2
        assert [c["name"] for c in body["components"]] == ["svc-2", "svc-3", "svc-4"]
        assert body["counts_by_status"] == {"healthy": 4, "critical": 3}
        assert body["overall_health"] == "critical"  # svc-0 is critical and failing
        assert {c["name"]: c["uptime_24h"] for c in body["components"]} == {
            "svc-2": 100.0,
            "svc-3": 0.0,
            "svc-4": 100.0,
        }
        assert scheduler.holds_whole_fleet  # the counts came from the scheduler's health map
        # Without the scheduler's map (other replicas probe) the database answers the same.
        guard.runtime.component_health.clear()
        again = (await guard.client.get("/api/v1/status", headers=viewer)).json()
        assert again["overall_health"] == "critical" and len(again["components"]) == 7
        assert again["counts_by_status"] == body["counts_by_status"] and again["total"] == 7
        bad = await guard.client.get("/api/v1/status", headers=viewer, params={"limit": 0})
        assert bad.status_code == 422 and bad.json()["error"]["type"] == "validation_error"


async def test_a_shutdown_cut_short_counts_what_it_could_not_write(
    db_url, tmp_path, http_target, monkeypatch
):
    real_write = writer_module.write_batch
    stall = asyncio.Event()

    async def stalled_write(session, items, tracked, events, *rest):
        await stall.wait()  # the database is stuck; only the test releases it
        return await real_write(session, items, tracked, events, *rest)

    monkeypatch.setattr(writer_module, "MAX_BATCH", 10)
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        ids = await three_components(guard, scheduler, http_target.url("/ok"))
        monkeypatch.setattr(writer_module, "write_batch", stalled_write)
        for i in range(35):
            scheduler.writer.add(Observation(ids[i % 3], "http", CheckResult.up("ok", 0.001)))
        closing = asyncio.create_task(scheduler.writer.close())
        await asyncio.sleep(0.3)  # the drain is stuck in its first batch
        closing.cancel()
        await asyncio.gather(closing, return_exceptions=True)
        assert scheduler.writer.dropped_results == 25  # the 10 in flight are still being written
        stall.set()
        await asyncio.gather(*scheduler.writer._flushes, return_exceptions=True)
        assert await stored(guard) == 10


async def test_status_from_the_database_counts_only_monitored_components_and_finds_the_overall(
    db_url, tmp_path
):
    """Without the scheduler's map (other replicas probe) /api/v1/status reads the database: a check
    stored as SQL NULL, JSON null or {} and a disabled component are not monitored; the overall health
    is critical only while a critical component is critical or failed."""
    from sqlalchemy import null

    from app.db.models import ComponentState

    async with monitored(mon_settings(db_url, tmp_path)) as (guard, _scheduler):
        heartbeat = {"kind": "heartbeat", "period": 3600, "grace": 60}
        names = ["core", "edge-a", "edge-b", "sql-null", "json-null", "empty", "off"]
        for name in names:
            await add_component(guard, name, heartbeat, critical=name in ("core", "off", "empty"))
        statuses = {"core": "healthy", "edge-a": "healthy", "edge-b": "degraded"}
        async with guard.session() as session:
            ids = dict((await session.execute(select(Component.name, Component.id))).all())
            for name in ("sql-null", "json-null", "empty", "off"):
                statuses[name] = "failed"  # all critical or failed, none of them monitored
            await session.execute(update(Component).where(Component.name == "sql-null").values(check=null()))
            await session.execute(update(Component).where(Component.name == "json-null").values(check=None))
            await session.execute(update(Component).where(Component.name == "empty").values(check={}))
            await session.execute(update(Component).where(Component.name == "off").values(enabled=False))
            for name, status in statuses.items():
                await session.execute(
                    update(ComponentState)
                    .where(ComponentState.component_id == ids[name])
                    .values(status=status)
                )
            await session.commit()
        guard.runtime.component_health.clear()
        viewer = await guard.headers("viewer")

        async def status() -> dict:
            r = await guard.client.get("/api/v1/status", headers=viewer)
            assert r.status_code == 200, r.text
            return r.json()

        body = await status()
        assert [c["name"] for c in body["components"]] == ["core", "edge-a", "edge-b"]
        assert body["counts_by_status"] == {"healthy": 2, "degraded": 1} and body["total"] == 3
        assert body["overall_health"] == "degraded"
        for core_status, overall in (
            ("critical", "critical"),
            ("failed", "critical"),
            ("recovering", "degraded"),
        ):
            async with guard.session() as session:
                await session.execute(
                    update(ComponentState)
                    .where(ComponentState.component_id == ids["core"])
                    .values(status=core_status)
                )
                await session.commit()
            assert (await status())["overall_health"] == overall, core_status
        async with guard.session() as session:
            await session.execute(
                update(ComponentState)
                .where(ComponentState.component_id.in_([ids["core"], ids["edge-b"]]))
                .values(status="healthy")
            )
            await session.commit()
        body = await status()
        assert body["overall_health"] == "healthy" and body["counts_by_status"] == {"healthy": 3}


ANOTHER_PROCESS = """
import asyncio, sys
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

async def main(url, statements):
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        for statement in statements:
            await conn.execute(text(statement))
    await engine.dispose()

asyncio.run(main(sys.argv[1], sys.argv[2:]))
"""


async def in_another_process(db_url: str, *statements: str) -> None:
    """Run SQL from a separate process with its own engine, as another replica or a script would."""
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        ANOTHER_PROCESS,
        db_url,
        *statements,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()


async def test_an_idle_refresh_skips_the_fleet_diff_and_misses_no_change_from_another_process(
    db_url, tmp_path, http_target, monkeypatch
):
    """While neither the registry nor the ownership moved, a refresh does not walk the fleet (it does
    not even ask which components it owns); every change another process writes to the components
    table is still picked up by the next refresh."""
    async with monitored(mon_settings(db_url, tmp_path)) as (guard, scheduler):
        ids = await three_components(guard, scheduler, http_target.url("/ok"))
        await scheduler.refresh()  # settles: the diff that loaded them is checked once more
        asked: list[int] = []
        real_owned = scheduler.ownership.owned

        async def counting_owned(component_ids: set[int]) -> set[int]:
            asked.append(len(component_ids))
            return await real_owned(component_ids)

        monkeypatch.setattr(scheduler.ownership, "owned", counting_owned)
        for _ in range(3):
            await scheduler.refresh()
        assert asked == []  # steady state: no diff

        now = "CURRENT_TIMESTAMP"
        slow = json.dumps({"kind": "http", "url": http_target.url("/ok"), "interval": 120})
        await in_another_process(  # an edit as another replica's service writes it (version bumped)
            db_url,
            f"UPDATE components SET \"check\" = '{slow}', version = version + 1, updated_at = {now} "
            f"WHERE id = {ids[0]}",
        )
        await scheduler.refresh()
        assert scheduler.entries[ids[0]].interval == 120 and asked[0] == 3

        await in_another_process(db_url, f"UPDATE components SET enabled = false WHERE id = {ids[1]}")
        await scheduler.refresh()
        assert ids[1] not in scheduler.entries and "svc-1" not in guard.runtime.component_health

        await in_another_process(
            db_url,
            'INSERT INTO components (name, description, critical, labels, "check", enabled, source, '
            "version, created_at, updated_at, depends_on) VALUES ('svc-other', '', false, '{}', "
            f"'{slow}', true, 'api', 1, {now}, {now}, '[]')",
        )
        await scheduler.refresh()
        assert {t.name for t in scheduler.tracked.values()} == {"svc-0", "svc-2", "svc-other"}

        await in_another_process(db_url, f"DELETE FROM components WHERE id = {ids[2]}")
        await scheduler.refresh()
        assert {t.name for t in scheduler.tracked.values()} == {"svc-0", "svc-other"}
        assert set(guard.runtime.component_health) == {"svc-0", "svc-other"}

        await scheduler.refresh()  # the diff after a change checks once more that nothing else moved
        diffs = len(asked)
        for _ in range(3):
            await scheduler.refresh()
        assert len(asked) == diffs  # settled again
        scheduler.forget({ids[0]})  # forgotten here (e.g. its results fenced): the next refresh diffs
        await scheduler.refresh()
        assert len(asked) == diffs + 1 and ids[0] in scheduler.entries  # still owned: loaded again

        # A flush forgets a component while a refresh is loading another: the next refresh sees it.
        other = next(cid for cid, t in scheduler.tracked.items() if t.name == "svc-other")
        real_load = scheduler._load

        async def load_while_a_flush_forgets(session, component):
            await real_load(session, component)
            if other in scheduler.entries:
                scheduler.forget({other})

        monkeypatch.setattr(scheduler, "_load", load_while_a_flush_forgets)
        await in_another_process(
            db_url, f"UPDATE components SET version = version + 1, updated_at = {now} WHERE id = {ids[0]}"
        )
        await scheduler.refresh()
        assert other not in scheduler.entries
        monkeypatch.setattr(scheduler, "_load", real_load)
        await scheduler.refresh()
        assert other in scheduler.entries
