"""Ingest: validation, atomicity, per-point errors, unknown components, auth."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.db.models import MetricRollup, metric_points
from app.metrics.compaction import RollupCompactor
from tests.conftest import make_settings, running_guard
from tests.metrics.conftest import point, series


async def count_points(guard) -> int:
    async with guard.session() as s:
        return (await s.execute(select(func.count()).select_from(metric_points))).scalar_one()


async def test_batch_is_stored_with_rollups_and_latest(guard, now):
    h = await guard.headers("ingest")
    body = {"points": series(now - timedelta(minutes=3), [1, 2, 3, 4], step=60, labels={"host": "a"})}
    r = await guard.client.post("/api/v1/metrics/batch", json=body, headers=h)
    assert r.status_code == 201, r.text
    assert r.json() == {"accepted": 4}
    assert await count_points(guard) == 4
    async with guard.session() as s:
        rows = (
            await s.execute(
                select(MetricRollup.resolution, func.sum(MetricRollup.count)).group_by(
                    MetricRollup.resolution
                )
            )
        ).all()
    assert dict(rows) == {60: 4}  # fresh minute deltas: compaction builds the coarser levels
    await RollupCompactor(guard.runtime.core).run_once()
    async with guard.session() as s:
        rows = (
            await s.execute(
                select(MetricRollup.resolution, func.sum(MetricRollup.count)).group_by(
                    MetricRollup.resolution
                )
            )
        ).all()
    assert dict(rows) == {60: 4, 600: 4, 3600: 4}
    r = await guard.client.get(
        "/api/v1/metrics/latest", params={"component": "etl"}, headers=await guard.headers("viewer")
    )
    assert r.status_code == 200
    [latest] = r.json()
    assert latest["value"] == 4 and latest["labels"] == {"host": "a"}
    r = await guard.client.get(
        "/api/v1/metrics", params={"component": "etl", "limit": 2}, headers=await guard.headers("viewer")
    )
    assert [p["value"] for p in r.json()["items"]] == [4, 3]


async def test_single_point(guard):
    r = await guard.client.post("/api/v1/metrics", json=point(value=5), headers=await guard.headers("ingest"))
    assert r.status_code == 201, r.text
    assert await count_points(guard) == 1


async def test_batch_is_all_or_nothing_and_names_every_bad_point(guard, now):
    good = point(ts=now)
    bad = [
        good,
        {**good, "metric_name": "9bad-name"},
        {**good, "value": "NaN"},
        {**good, "value": 1e308 * 10} if False else {**good, "value": None},
        {**good, "labels": {f"k{i}": "v" for i in range(33)}},
        {**good, "labels": {"big": "x" * 10_000}},
        {**good, "labels": {"bad-key": "v"}},
        {**good, "timestamp": (now + timedelta(hours=1)).isoformat()},
        {**good, "timestamp": "1970-01-02T00:00:00+00:00"},
        {**good, "component": ""},
        good,
    ]
    r = await guard.client.post(
        "/api/v1/metrics/batch", json={"points": bad}, headers=await guard.headers("ingest")
    )
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["type"] == "validation_error"
    found = {(e["index"], e["field"].split(".")[0]) for e in err["details"]["errors"]}
    assert found == {
        (1, "metric_name"),
        (2, "value"),
        (3, "value"),
        (4, "labels"),
        (5, "labels"),
        (6, "labels"),
        (7, "timestamp"),
        (8, "timestamp"),
        (9, "component"),
    }
    assert err["details"]["invalid_points"] == 9
    assert await count_points(guard) == 0


async def test_nan_and_infinity_literals_are_rejected(guard):
    h = await guard.headers("ingest")
    for literal in (b"NaN", b"Infinity", b"-Infinity", b"1e999"):
        body = b'{"component":"etl","metric_name":"x","value":' + literal + b"}"
        r = await guard.client.post(
            "/api/v1/metrics", content=body, headers={**h, "content-type": "application/json"}
        )
        assert r.status_code == 422, (literal, r.text)
    assert await count_points(guard) == 0


async def test_batch_size_limit(guard, now):
    r = await guard.client.post(
        "/api/v1/metrics/batch", json=[point()] * 10_001, headers=await guard.headers("ingest")
    )
    assert r.status_code == 422
    assert await count_points(guard) == 0


async def test_permissions(guard):
    r = await guard.client.post("/api/v1/metrics", json=point(), headers=await guard.headers("viewer"))
    assert r.status_code == 403
    r = await guard.client.get("/api/v1/metrics", headers=await guard.headers("ingest"))
    assert r.status_code == 403
    r = await guard.client.post("/api/v1/metrics", json=point())
    assert r.status_code == 401


async def test_unknown_components_accepted_and_listed(guard):
    h = await guard.headers("admin")
    r = await guard.client.post("/api/v1/components", json={"name": "known"}, headers=h)
    assert r.status_code == 201, r.text
    r = await guard.client.post("/api/v1/metrics/batch", json=[point("known"), point("stranger")], headers=h)
    assert r.status_code == 201
    r = await guard.client.get("/api/v1/metrics/components", headers=h)
    assert [c["component"] for c in r.json()] == ["stranger"]


async def test_unknown_components_rejected_when_disabled(db_url, tmp_path):
    settings = make_settings(
        db_url, tmp_path, pipeline={"monitoring": {"allow_unknown_metric_components": False}}
    )
    async with running_guard(settings) as guard:
        h = await guard.headers("admin")
        await guard.client.post("/api/v1/components", json={"name": "known"}, headers=h)
        r = await guard.client.post(
            "/api/v1/metrics/batch", json=[point("known"), point("stranger")], headers=h
        )
        assert r.status_code == 422
        assert r.json()["error"]["details"]["errors"] == [
            {"index": 1, "field": "component", "message": "unknown component 'stranger'"}
        ]
        assert await count_points(guard) == 0
        r = await guard.client.post("/api/v1/metrics/batch", json=[point("known")], headers=h)
        assert r.status_code == 201


async def test_sqlite_write_lock_is_not_held_while_a_batch_computes_its_rows(guard, db_url, now, monkeypatch):
    """The rollup deltas are built before the batch's first write: SQLite's write lock (held from
    the first write to the commit) covers only the statements, so a concurrent batch is not kept
    waiting behind this one's Python work."""
    if not db_url.startswith("sqlite"):
        pytest.skip("Postgres has no database-wide write lock")
    path = db_url.split(":///", 1)[1]
    from app.metrics import repository

    seen: list[bool] = []

    def build_deltas(batch):
        other = sqlite3.connect(path, timeout=0)
        try:
            other.execute("BEGIN IMMEDIATE")  # fails with "database is locked" while a writer holds it
            other.rollback()
            seen.append(True)
        except sqlite3.OperationalError:
            seen.append(False)
        finally:
            other.close()
        return real(batch)

    real = repository.build_deltas
    monkeypatch.setattr(repository, "build_deltas", build_deltas)
    body = {"points": series(now - timedelta(minutes=3), [1, 2, 3], step=60)}
    r = await guard.client.post("/api/v1/metrics/batch", json=body, headers=await guard.headers("ingest"))
    assert r.status_code == 201, r.text
    assert seen == [True]
    assert await count_points(guard) == 3


async def test_postgres_builds_a_batchs_rollup_deltas_while_its_points_copy_is_in_flight(
    guard, db_url, now, monkeypatch
):
    """On Postgres the points' COPY is sent first and the rollup deltas are built while the backend
    stores the points (the copy ends only after the deltas were built); everything is still stored
    in the batch's one transaction."""
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite computes every row before its first write (the write lock)")
    from app.metrics import repository
    from app.metrics.ingest_pg import PostgresIngest

    events: list[str] = []
    real_points, real_deltas = PostgresIngest.insert_points, repository.build_deltas

    async def insert_points(self, session, batch):
        events.append("copy begins")
        await real_points(self, session, batch)
        events.append("copy ends")

    def build_deltas(batch):
        events.append("deltas")
        return real_deltas(batch)

    monkeypatch.setattr(PostgresIngest, "insert_points", insert_points)
    monkeypatch.setattr(repository, "build_deltas", build_deltas)
    body = {"points": series(now - timedelta(minutes=3), [1, 2, 3], step=60)}
    r = await guard.client.post("/api/v1/metrics/batch", json=body, headers=await guard.headers("ingest"))
    assert r.status_code == 201, r.text
    assert events == ["copy begins", "deltas", "copy ends"]
    assert await count_points(guard) == 3
    async with guard.session() as s:
        assert (await s.execute(select(func.sum(MetricRollup.count)))).scalar_one() == 3


async def test_a_batch_failing_while_its_points_copy_is_in_flight_stores_nothing(guard, now, monkeypatch):
    """A failure while the batch's rows are computed (on Postgres with the points' COPY in flight)
    rolls the whole batch back once the copy has ended, and the next batch is stored as usual."""
    from app.metrics import repository

    real = repository.build_deltas

    def failing(batch):
        raise RuntimeError("deltas failed")

    monkeypatch.setattr(repository, "build_deltas", failing)
    h = await guard.headers("ingest")
    body = {"points": series(now - timedelta(minutes=3), [1, 2, 3], step=60)}
    with pytest.raises(RuntimeError, match="deltas failed"):
        await guard.client.post("/api/v1/metrics/batch", json=body, headers=h)
    assert await count_points(guard) == 0
    monkeypatch.setattr(repository, "build_deltas", real)
    r = await guard.client.post("/api/v1/metrics/batch", json=body, headers=h)
    assert r.status_code == 201, r.text
    assert await count_points(guard) == 3


async def test_an_authenticated_batch_costs_one_auth_statement_and_no_thread_hop(guard, now, monkeypatch):
    """The per-request cost of ingest: the caller is checked in one statement (user and revocation
    together), and no dependency of the route hops to the threadpool."""
    from fastapi.dependencies import utils as fastapi_deps
    from sqlalchemy import event

    headers = await guard.headers("operator")
    hops = []
    real_run = fastapi_deps.run_in_threadpool

    async def counting_run(func, *args, **kwargs):
        hops.append(getattr(func, "__name__", repr(func)))
        return await real_run(func, *args, **kwargs)

    monkeypatch.setattr(fastapi_deps, "run_in_threadpool", counting_run)
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    engine = guard.runtime.engine.sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        r = await guard.client.post(
            "/api/v1/metrics/batch", headers=headers, json={"points": series(now, [1.0, 2.0])}
        )
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert r.status_code == 201, r.text
    assert hops == []
    auth = [s for s in statements if "users" in s or "revoked_tokens" in s]
    assert len(auth) == 1, auth


def test_sqlite_points_chunks_cover_every_row_once_in_order_with_few_statement_texts():
    from app.metrics.ingest_sqlite import CHUNK_ROWS, FEW_ROWS, _insert_points_sql, points_chunks

    texts: set[str] = set()
    sizes = (
        0,
        1,
        2,
        FEW_ROWS - 1,
        FEW_ROWS,
        CHUNK_ROWS - 1,
        CHUNK_ROWS,
        CHUNK_ROWS + 1,
        3 * CHUNK_ROWS + 777,
    )
    for size in (*sizes, 10_000):
        rows = [(f"c{i}", "m", "", "{}", float(i), f"t{i}") for i in range(size)]
        flat: list = []
        calls = list(points_chunks(tuple(x for row in rows for x in row)))
        for sql, sets in calls:
            n = len(sets[0]) // 6
            assert all(len(params) == 6 * n for params in sets)
            assert n in (CHUNK_ROWS, 1) or (n & (n - 1) == 0 and FEW_ROWS <= n < CHUNK_ROWS)
            assert len(sets) == 1 or n in (CHUNK_ROWS, 1)  # several sets: the full chunks, the few last rows
            assert sql == _insert_points_sql(n) and sql.count("?") == 6 * n
            texts.add(sql)
            for params in sets:
                flat += params
        assert flat == [x for row in rows for x in row]
        assert len(calls) <= 2 + (CHUNK_ROWS // FEW_ROWS).bit_length()
    assert len(list(points_chunks(tuple(range(6 * 10 * CHUNK_ROWS))))) == 1  # ten full chunks: one call
    assert len(texts) <= 2 + (CHUNK_ROWS // FEW_ROWS).bit_length()


async def test_an_odd_sized_batch_is_stored_point_for_point(guard, now, db_url):
    """A batch that is not a multiple of the SQLite insert's chunk: every point stored once, with its
    value, timestamp and labels (the chunks' statements and parameters line up)."""
    from app.metrics.ingest_sqlite import CHUNK_ROWS

    size = 2 * CHUNK_ROWS + 37
    start = now - timedelta(seconds=size + 60)
    body = {
        "points": [
            point(value=float(i), ts=start + timedelta(seconds=i), labels={"host": f"h{i % 3}"})
            for i in range(size)
        ]
    }
    r = await guard.client.post("/api/v1/metrics/batch", json=body, headers=await guard.headers("ingest"))
    assert r.status_code == 201, r.text
    t = metric_points.c
    async with guard.session() as s:
        rows = (await s.execute(select(t.value, t.ts, t.series_key, t.labels).order_by(t.ts))).all()
    assert len(rows) == size
    for i, (value, ts, key, labels) in enumerate(rows):
        assert value == float(i)
        assert ts == start + timedelta(seconds=i)
        assert key == f'{{"host":"h{i % 3}"}}' and labels == {"host": f"h{i % 3}"}


async def test_sqlite_points_go_as_multi_row_inserts_not_a_row_at_a_time(guard, now, db_url):
    """On SQLite a batch's points are a few multi-row INSERT statements (one driver step each), not
    an executemany stepping once per row with a GIL hand-off around every step."""
    if not db_url.startswith("sqlite"):
        pytest.skip("Postgres writes the points with one binary COPY")
    from sqlalchemy import event

    from app.metrics.ingest_sqlite import CHUNK_ROWS, FEW_ROWS

    inserts: list[tuple[bool, int]] = []

    def seen(_conn, _cursor, statement, parameters, _context, executemany) -> None:
        if statement.startswith("INSERT INTO metric_points"):
            inserts.append((executemany, len(parameters)))

    engine = guard.runtime.engine.sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        size = 2 * CHUNK_ROWS + FEW_ROWS + 5
        body = {"points": series(now - timedelta(seconds=size + 100), range(size))}
        r = await guard.client.post("/api/v1/metrics/batch", json=body, headers=await guard.headers("ingest"))
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert r.status_code == 201, r.text
    # Two full chunks in one call (executed once each), FEW_ROWS in one statement, the last 5 rows
    # one step each.
    assert inserts == [(True, 2), (False, 6 * FEW_ROWS), (True, 5)]
    assert await count_points(guard) == size
