"""What ingest hands the rule evaluator: the points of the series a rule watches, and only those,
from the first batch after start and across a rule change made here. A burst of other series can
then never fill the evaluator's bounded queue and shed the points a rule is waiting for."""

from __future__ import annotations

import pytest

from app.detection import evaluator as evaluator_module
from tests.metrics.conftest import point
from tests.metrics.test_metric_rules import add_rule, anomalies, send

QUEUE = 1_000  # the evaluator's queue bound, small for the test (the product's is 200,000)


def burst(n: int) -> list[dict]:
    return [point(name="bytes_read", value=float(i)) for i in range(n)]


@pytest.fixture
def small_queue(monkeypatch):
    monkeypatch.setattr(evaluator_module, "MAX_QUEUE", QUEUE)


async def test_a_rule_created_during_a_burst_judges_the_next_point(guard, small_queue):
    evaluator = guard.runtime.detection.evaluator
    await evaluator.run_once()  # rules loaded (none yet)
    await add_rule(guard, "threshold", {"operator": "gt", "value": 10})
    for _ in range(3):
        await send(guard, burst(QUEUE))  # another series of the same component, not watched
    await send(guard, [point(value=50.0)])
    assert evaluator.dropped == 0
    await evaluator.run_once()
    assert [a.metric_name for a in await anomalies(guard)] == ["rows_processed"]


async def test_a_burst_before_the_first_load_keeps_the_watched_points(guard, small_queue):
    evaluator = guard.runtime.detection.evaluator
    await add_rule(guard, "threshold", {"operator": "gt", "value": 10})  # before the evaluator ever ran
    for _ in range(3):
        await send(guard, burst(QUEUE))
    await send(guard, [point(value=50.0)])
    assert evaluator.dropped == 0
    await evaluator.run_once()
    assert [a.metric_name for a in await anomalies(guard)] == ["rows_processed"]


async def test_an_edited_rule_keeps_judging_its_series(guard, small_queue):
    evaluator = guard.runtime.detection.evaluator
    rule = await add_rule(guard, "threshold", {"operator": "gt", "value": 100})
    await evaluator.run_once()
    r = await guard.client.patch(
        f"/api/v1/rules/{rule['id']}",
        json={"params": {"operator": "gt", "value": 10}},
        headers=await guard.headers("admin"),
    )
    assert r.status_code == 200, r.text
    for _ in range(3):
        await send(guard, burst(QUEUE))
    await send(guard, [point(value=50.0)])
    await evaluator.run_once()
    assert evaluator.dropped == 0
    assert [a.metric_name for a in await anomalies(guard)] == ["rows_processed"]
