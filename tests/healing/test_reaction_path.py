"""The reaction's path, from a handed-over incident to its action: the round trips of one decision,
the claim and its "acting" marker in one commit, and what that commit's lost answer leaves behind."""

from __future__ import annotations

from sqlalchemy import event

import app.healing.attempts as attempts_module
from app.db.models.healing import HealingBudget
from tests.healing.conftest import count_lines, healing_guard, touch_argv, wait_until


def _statements(engine) -> tuple[list[str], object]:
    seen: list[str] = []

    def note(_connection, _cursor, statement, *_args) -> None:
        seen.append(" ".join(statement.split()[:2]))

    event.listen(engine, "before_cursor_execute", note)
    return seen, note


def _only_healing(rt):
    from app.healing.loop import HealingLoop

    return [HealingLoop(rt.core, rt.healing.engine)]


async def test_a_handed_over_incident_is_claimed_and_marked_acting_in_one_commit(healing, tmp_path):
    """Every commit on the way from the hand-over to the spawn is a round trip (and on SQLite a turn
    at the write lock) the reaction waits for: the automatic claim carries its acting marker."""
    marker = tmp_path / "ran"
    await healing.add_component("worker", {"strategies": [{"kind": "restart", "argv": touch_argv(marker)}]})
    incident = await healing.open_incident("worker")
    commits: list[int] = []
    engine = healing.runtime.engine.sync_engine

    def count(_connection) -> None:
        commits.append(1)

    event.listen(engine, "commit", count)
    try:
        started = await healing.engine.react([incident])  # decided and spawned, the action not yet run
    finally:
        event.remove(engine, "commit", count)
    assert len(started) == 1
    assert len(commits) == 1
    [attempt] = await healing.attempts()
    assert attempt.state == "running" and attempt.acting_at is not None and attempt.lease_until is not None
    await healing.engine.drain(timeout=30)
    assert count_lines(marker) == 1
    [attempt] = await healing.attempts()
    assert attempt.state == "verifying"


async def test_a_claim_whose_commit_answer_was_lost_is_retried(db_url, tmp_path, monkeypatch):
    """The claim (with its acting marker) reaches the database but its commit raises (the connection
    broke before the answer came back): no action ran, so once its lease runs out the reconciler
    settles it as never started, and the incident is healed at once by the next attempt without
    back-off and without spending max_attempts."""
    marker = tmp_path / "ran"
    real_commit = attempts_module.commit_claim
    lost: list[int] = []

    async def commit_then_lose_the_answer(session):
        stored = await real_commit(session)
        if not lost:
            lost.append(1)
            raise ConnectionResetError("connection lost while committing (test)")
        return stored

    monkeypatch.setattr(attempts_module, "commit_claim", commit_then_lose_the_answer)
    async with healing_guard(db_url, tmp_path, build_services=_only_healing, attempt_lease=2) as h:
        await h.add_component(
            "w",
            {
                "strategies": [{"kind": "restart", "argv": touch_argv(marker)}],
                "max_attempts": 1,
                "backoff_initial": "1h",
                "backoff_max": "2h",
            },
        )
        await h.open_incident("w")

        async def two():
            rows = await h.attempts(component="w")
            return rows if len(rows) == 2 and rows[1].state != "running" else None

        first, second = await wait_until(two, timeout=30)
        assert lost == [1]
        assert first.state == "interrupted" and first.decision["acted"] is False and first.acting_at is None
        assert "before its action started" in first.detail
        assert second.attempt_number == 2 and second.state in ("verifying", "succeeded")
        assert count_lines(marker) == 1
        assert not h.raised("healing exhausted: human needed")
        async with h.guard.session() as session:
            assert (await session.get(HealingBudget, "w")).backoff_level == 0


async def test_a_decision_reads_the_incident_its_component_and_attempts_in_one_statement(healing, tmp_path):
    """Each statement is a round trip the reaction waits for (on a busy event loop, a turn of the loop
    each): what the decision needs of the incident is one read, and nothing is read twice."""
    marker = tmp_path / "ran"
    await healing.add_component("worker", {"strategies": [{"kind": "restart", "argv": touch_argv(marker)}]})
    async with healing.guard.session() as session:  # as after the component's first heal
        session.add(HealingBudget(component="worker", backoff_level=0, failed_incidents=[]))
    incident = await healing.open_incident("worker")
    engine = healing.runtime.engine.sync_engine
    seen, note = _statements(engine)
    try:
        assert len(await healing.engine.react([incident])) == 1
    finally:
        event.remove(engine, "before_cursor_execute", note)
    reads = [s for s in seen if s.startswith("SELECT")]
    # The incident with its component and attempts; the status it opened with (this test's incident is
    # not its component's current one); silences; the budget (locked) and the free slots: on Postgres in
    # one statement with the lease fence (tests/replicas/test_claim_reads.py), on SQLite one by one.
    postgres = healing.runtime.engine.dialect.name == "postgresql"
    assert len(reads) == (4 if postgres else 5), seen
    assert [s for s in seen if not s.startswith("SELECT")] in (
        ["INSERT INTO"],
        ["BEGIN IMMEDIATE", "INSERT INTO"],  # SQLite: the decision under the write lock
    ), seen
    await healing.engine.drain(timeout=30)
    assert count_lines(marker) == 1
