"""The periodic pass of a guard with nothing to heal asks the database one question, not seven; once
there is something (an open incident), the whole pass runs."""

from __future__ import annotations

from sqlalchemy import event

from tests.healing.conftest import touch_argv


async def test_an_idle_pass_is_one_statement_and_a_busy_one_decides(healing, tmp_path):
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    event.listen(healing.runtime.engine.sync_engine, "before_cursor_execute", count)
    assert await healing.engine.evaluate() == []
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1, statements
    assert healing.runtime.metrics.healing_in_progress._value.get() == 0

    marker = tmp_path / "ran"
    await healing.add_component("worker", {"strategies": [{"kind": "restart", "argv": touch_argv(marker)}]})
    await healing.open_incident("worker")
    assert len(await healing.step()) == 1  # the periodic pass decides it
