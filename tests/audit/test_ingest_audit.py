"""A metric batch's audit row is written in the batch's own transaction: one commit per batch, and a
batch whose row cannot be stored is not stored either (and says so); the attempt still has its row."""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import UTC, datetime

from sqlalchemy import event, func, select, text

from app.db.models import AuditEntry, metric_points


def batch(n: int = 3) -> dict:
    now = datetime.now(UTC).replace(microsecond=0)
    return {
        "points": [
            {"component": "etl", "metric_name": "rows", "value": float(i), "timestamp": now.isoformat()}
            for i in range(n)
        ]
    }


async def rows(guard) -> list[AuditEntry]:
    async with guard.session() as session:
        return list((await session.execute(select(AuditEntry).order_by(AuditEntry.id))).scalars())


async def stored_points(guard) -> int:
    async with guard.session() as session:
        return (await session.execute(select(func.count()).select_from(metric_points))).scalar_one()


async def test_a_batch_and_its_audit_row_commit_together_once(guard):
    headers = await guard.headers("ingest")
    before = len(await rows(guard))
    commits: list[int] = []

    def committed(_conn) -> None:
        commits.append(1)

    engine = guard.runtime.engine.sync_engine
    event.listen(engine, "commit", committed)
    try:
        r = await guard.client.post("/api/v1/metrics/batch", json=batch(), headers=headers)
        single = await guard.client.post("/api/v1/metrics", json=batch(1)["points"][0], headers=headers)
    finally:
        event.remove(engine, "commit", committed)
    assert (r.status_code, single.status_code) == (201, 201), (r.text, single.text)
    assert len(commits) == 2  # one per request: the points and the audit row together
    batch_row, single_row = (await rows(guard))[before:]
    assert batch_row.action == "POST /api/v1/metrics/batch" and single_row.action == "POST /api/v1/metrics"
    assert batch_row.username == "ingest-user" and batch_row.role == "ingest"
    assert batch_row.status_code == 201 and batch_row.request_id == r.headers["x-request-id"]
    assert batch_row.client == "127.0.0.1"
    assert batch_row.summary["request"]["points"][0]["component"] == "etl"
    assert single_row.status_code == 201 and single_row.summary["request"]["metric_name"] == "rows"


async def test_a_rejected_batch_keeps_its_own_audit_row(guard):
    headers = await guard.headers("ingest")
    before = len(await rows(guard))
    r = await guard.client.post(
        "/api/v1/metrics/batch", json={"points": [{"component": "etl"}]}, headers=headers
    )
    assert r.status_code == 422
    (row,) = (await rows(guard))[before:]
    assert (row.action, row.status_code, row.username) == ("POST /api/v1/metrics/batch", 422, "ingest-user")
    assert await stored_points(guard) == 0


async def test_a_batch_whose_audit_row_cannot_be_stored_is_not_stored(guard, db_url):
    """Before, the points were committed first and the row written afterwards: a failing audit
    insert was only logged, and the batch was acknowledged without its row."""
    headers = await guard.headers("ingest")
    async with refusing_201_audit_rows(guard, sqlite=db_url.startswith("sqlite")):
        before = len(await rows(guard))
        r = await guard.client.post("/api/v1/metrics/batch", json=batch(), headers=headers)
        # Not acknowledged (the refusal is an integrity error on SQLite: 409; on Postgres a 500).
        assert r.status_code in (409, 500), r.text
        assert r.json()["error"]["type"]
        assert await stored_points(guard) == 0
        (row,) = (await rows(guard))[before:]  # the attempt, with the status it was answered
        assert (row.action, row.status_code, row.username) == (
            "POST /api/v1/metrics/batch",
            r.status_code,
            "ingest-user",
        )


@asynccontextmanager
async def refusing_201_audit_rows(guard, *, sqlite: bool):
    """A trigger that refuses every audit row of status 201, dropped afterwards (the Postgres test
    database outlives the test: it is emptied, not dropped)."""
    if sqlite:
        create = [
            "CREATE TRIGGER refuse_201 BEFORE INSERT ON audit_log WHEN NEW.status_code = 201 "
            "BEGIN SELECT RAISE(ABORT, 'audit store refuses'); END"
        ]
        drop = ["DROP TRIGGER IF EXISTS refuse_201"]
    else:
        create = [
            "CREATE FUNCTION refuse_201() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.status_code = 201 THEN RAISE EXCEPTION 'audit store refuses'; END IF; "
            "RETURN NEW; END $$",
            "CREATE TRIGGER refuse_201 BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION refuse_201()",
        ]
        drop = ["DROP TRIGGER IF EXISTS refuse_201 ON audit_log", "DROP FUNCTION IF EXISTS refuse_201()"]
    async with guard.session() as session:
        for statement in create:
            await session.execute(text(statement))
    try:
        yield
    finally:
        async with guard.session() as session:
            for statement in drop:
                await session.execute(text(statement))
