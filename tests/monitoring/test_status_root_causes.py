"""/api/v1/status's root causes at fleet scale: the query that finds the components with dependencies
is answered from the partial index `ix_components_dependencies` on both dialects, not by reading
every component."""

from __future__ import annotations

from sqlalchemy import event, insert, text

from app.db.models import Component
from app.healing.rootcause import load_graph, root_causes


async def test_the_dependency_graph_is_read_from_its_partial_index(guard):
    rows = [{"name": f"c{i}", "depends_on": ["c0"] if i in (1, 2) else []} for i in range(30)]
    async with guard.session() as session:
        await session.execute(insert(Component), rows)
    engine = guard.runtime.engine
    seen: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # noqa: ARG001
        if "depends_on" in statement and "component_states" not in statement:
            seen.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with guard.session() as session:
            assert await root_causes(session) == []  # nothing unhealthy
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    [(statement, parameters)] = seen
    async with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            # A table this small is read whole anyway: ask whether the index can answer at all.
            await conn.execute(text("SET LOCAL enable_seqscan = off"))
            plan = await conn.exec_driver_sql(f"EXPLAIN {statement}", parameters)
        else:
            plan = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
        lines = " ".join(str(row) for row in plan.all())
    assert "ix_components_dependencies" in lines, lines


async def test_the_graph_is_read_once_per_transaction(guard):
    """A flush publishes one event per transition: the graph is read once in its transaction, and
    read again by the next transaction (which may follow an edit)."""
    engine = guard.runtime.engine
    reads: list[str] = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # noqa: ARG001
        if "depends_on" in statement and "component_states" not in statement:
            reads.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with guard.session() as session:
            first = await load_graph(session, cached=True)
            assert await load_graph(session, cached=True) is first
        assert len(reads) == 1
        async with guard.session() as session:
            await load_graph(session, cached=True)
        assert len(reads) == 2
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
