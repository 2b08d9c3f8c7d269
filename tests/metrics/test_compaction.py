"""Bulk rollup compaction: rounds smaller than the backlog, late deltas into compacted buckets,
two compactors at once (Postgres: SKIP LOCKED), and never a changed answer."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import text

from app.db.session import session_scope
from app.metrics.compaction import CompactionRaced, RollupCompactor, compact_round
from tests.metrics.conftest import series
from tests.metrics.levels import totals
from tests.metrics.test_metrics_summary_retention import post_all


async def ingest_in_small_batches(guard, now, labels, n=600, batch=40):
    points = series(now - timedelta(minutes=50), [float(i % 97) for i in range(n)], step=5.0, labels=labels)
    headers = await guard.headers("ingest")
    for i in range(0, n, batch):
        await post_all(guard, points[i : i + batch], headers)


async def test_rounds_smaller_than_the_backlog_compact_everything(guard, now):
    await ingest_in_small_batches(guard, now, {"host": "a"})
    await ingest_in_small_batches(guard, now, {"host": "b"})
    before = await totals(guard)
    minutes = sum(1 for key in before["buckets"] if key[0] == 60)
    assert before["pending"] == before["rows"] > minutes  # several deltas per minute, no coarser rows

    compactor = RollupCompactor(guard.runtime.core, batch=7)
    assert await compactor.run_once() > before["pending"]  # and the coarser deltas it wrote
    after = await totals(guard)
    assert after["buckets"] == before["buckets"]  # no value lost or counted twice
    assert after["pending"] == 0 and after["rows"] == len(after["buckets"])  # one row per bucket
    assert await compactor.run_once() == 0


async def test_late_deltas_merge_into_the_compacted_row(guard, now):
    await ingest_in_small_batches(guard, now, {"host": "a"}, n=200)
    await RollupCompactor(guard.runtime.core).run_once()
    first = await totals(guard)
    # the same buckets again (a late or re-sent scrape): new deltas beside compacted rows
    await ingest_in_small_batches(guard, now, {"host": "a"}, n=200)
    mid = await totals(guard)
    assert mid["pending"] > 0 and set(mid["buckets"]) == set(first["buckets"])
    await RollupCompactor(guard.runtime.core).run_once()
    after = await totals(guard)
    assert after["rows"] == len(after["buckets"]) == len(first["buckets"]) and after["pending"] == 0
    for key, (count, total, lo, hi) in first["buckets"].items():
        assert after["buckets"][key] == (2 * count, round(2 * total, 6), lo, hi)


async def test_two_compactors_at_once_lose_and_double_nothing(guard, now):
    for host in "abcd":
        await ingest_in_small_batches(guard, now, {"host": host}, n=300, batch=25)
    before = await totals(guard)

    raced = 0

    async def compactor(batch: int) -> int:
        nonlocal raced
        done = 0
        while True:
            try:
                async with session_scope(guard.runtime.sessionmaker) as session:
                    n = await compact_round(session, batch)
            except CompactionRaced:  # SQLite has no row locks: the loser rolls back whole and retries
                raced += 1
                continue
            done += n
            if n == 0:
                return done

    claimed = await asyncio.gather(compactor(11), compactor(13))
    if guard.runtime.engine.dialect.name == "postgresql":
        assert raced == 0  # SKIP LOCKED: disjoint claims, nothing to roll back
    assert sum(claimed) >= before["pending"]
    after = await totals(guard)
    assert after["buckets"] == before["buckets"] and after["pending"] == 0
    # at most a stray second compacted row where both merged into one bucket at the same moment
    assert after["rows"] <= len(after["buckets"]) * 2


async def test_late_deltas_of_more_buckets_than_one_statement_takes_merge_into_their_rows(guard, now):
    # 700 series x 3 levels: 2,100 compacted buckets looked up at once (SQLite: in several IN lists;
    # Postgres: one statement over arrays).
    points = [
        {
            "component": "etl",
            "metric_name": "rows_processed",
            "value": float(i),
            "labels": {"shard": str(i)},
            "timestamp": (now - timedelta(minutes=5)).isoformat(),
        }
        for i in range(700)
    ]
    headers = await guard.headers("ingest")
    await post_all(guard, points, headers)
    await RollupCompactor(guard.runtime.core).run_once()
    first = await totals(guard)
    assert len(first["buckets"]) == 2100 and first["pending"] == 0
    await post_all(guard, points, headers)
    await RollupCompactor(guard.runtime.core).run_once()
    after = await totals(guard)
    assert after["rows"] == 2100 and after["pending"] == 0
    assert after["buckets"] == {
        k: (2 * c, round(2 * t, 6), lo, hi) for k, (c, t, lo, hi) in first["buckets"].items()
    }


async def test_a_round_waiting_for_rows_another_round_took_merges_only_its_own_deltas(guard, now):
    """Postgres: round B claims newer deltas of the buckets whose compacted rows round A is
    replacing; B waits for A's locks, then skips the rows A deleted (never merges them a second
    time) and leaves a second compacted row beside A's."""
    if guard.runtime.engine.dialect.name != "postgresql":
        pytest.skip("row locks are Postgres'; SQLite runs one compactor (single replica)")
    labels = {"host": "a"}
    await ingest_in_small_batches(guard, now, labels, n=120, batch=120)
    await RollupCompactor(guard.runtime.core).run_once()
    once = await totals(guard)
    await ingest_in_small_batches(guard, now, labels, n=120, batch=120)  # deltas for round A

    sessions = guard.runtime.sessionmaker
    async with session_scope(sessions) as first:
        assert await compact_round(first, 5000) > 0  # holds the old compacted rows, deleted
        await ingest_in_small_batches(guard, now, labels, n=120, batch=120)  # deltas for round B

        async def second() -> int:
            async with session_scope(sessions) as session:
                return await compact_round(session, 5000)

        waiting = asyncio.create_task(second())
        for _ in range(1200):  # until B waits on A's row locks (a loaded machine: up to a minute)
            # A new transaction each time: pg_stat_activity is a snapshot taken once per transaction.
            async with guard.session() as probe:
                waits = await probe.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock'"
                    )
                )
            if waits:
                break
            await asyncio.sleep(0.05)
        assert waits, "the second round never waited for the first one's rows"
    assert await waiting > 0
    await RollupCompactor(guard.runtime.core).run_once()  # the coarser deltas both rounds wrote

    after = await totals(guard)
    assert after["pending"] == 0
    for key, (count, total, lo, hi) in once["buckets"].items():
        assert after["buckets"][key] == (3 * count, round(3 * total, 6), lo, hi)
    assert len(once["buckets"]) < after["rows"] <= 2 * len(once["buckets"])


async def test_a_large_round_merges_off_the_event_loop_with_the_same_result(guard, now, monkeypatch):
    """Merging a full round's sketches is tens of milliseconds of CPU: it runs on a thread, so the
    loop keeps serving probes, flushes and healing meanwhile; the merged buckets are the same."""
    import threading

    from app.metrics import compaction

    await ingest_in_small_batches(guard, now, {"host": "a"}, n=200)
    await ingest_in_small_batches(guard, now, {"host": "a"}, n=200)  # every bucket: two deltas to merge
    before = await totals(guard)
    threads: set[str] = set()
    merge = compaction.merge_groups

    def recording(groups):
        threads.add(threading.current_thread().name)
        return merge(groups)

    monkeypatch.setattr(compaction, "merge_groups", recording)
    monkeypatch.setattr(compaction, "MERGE_INLINE_MAX", 2)
    assert await RollupCompactor(guard.runtime.core).run_once() > before["pending"]
    assert threads and threading.main_thread().name not in threads
    after = await totals(guard)
    assert after["buckets"] == before["buckets"] and after["pending"] == 0
