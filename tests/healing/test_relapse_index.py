"""The relapse check (a new incident soon after a heal: that heal did not hold) reads the component's
latest succeeded attempt from the index on (component, state, finished_at), on both dialects, not by
reading every attempt of the component (or every succeeded attempt)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import event, insert, text

from app.db.models.healing import AttemptState, HealingAttempt

INDEX = "ix_healing_attempts_component_state_finished"


async def test_the_relapse_check_reads_the_latest_succeeded_attempt_from_its_index(guard):
    now = datetime.now(UTC)
    states = [AttemptState.SUCCEEDED, AttemptState.FAILED]
    rows = [
        {
            "incident_id": i,
            "incident_key": f"i:{i}",
            "attempt_number": 1,
            "component": f"c{i % 5}",
            "strategy": "restart",
            "state": states[i % 2],
            "created_at": now - timedelta(hours=2, minutes=i),
            "finished_at": now - timedelta(hours=1, minutes=i),
        }
        for i in range(1, 61)
    ]
    async with guard.session() as session:
        await session.execute(insert(HealingAttempt), rows)
    engine = guard.runtime.engine
    seen: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # noqa: ARG001
        if "FROM healing_attempts" in statement and "finished_at DESC" in statement:
            seen.append((statement, parameters))

    incidents = guard.runtime.healing.engine.incidents
    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with guard.session() as session:
            await incidents._count_relapse(session, "c1", 1, 999, now, "down")
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    [(statement, parameters)] = seen
    async with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            # A table this small is read whole anyway: ask whether the index can answer at all, and
            # whether it is the one chosen among those that could.
            await conn.execute(text("SET LOCAL enable_seqscan = off"))
            await conn.execute(text("ANALYZE healing_attempts"))
            plan = await conn.exec_driver_sql(f"EXPLAIN {statement}", parameters)
        else:
            await conn.exec_driver_sql("ANALYZE healing_attempts")
            plan = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
        lines = " ".join(str(row) for row in plan.all())
    assert INDEX in lines, lines
