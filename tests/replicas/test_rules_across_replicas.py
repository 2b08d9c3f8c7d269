"""Detection rules changed through one replica take effect on every replica: points ingested through
replica B are judged by a rule created, changed or deleted through replica A's API (each replica
evaluates the points it ingests, with the rules it has loaded). A change made elsewhere is seen at the
evaluator's next pass."""

from __future__ import annotations

from sqlalchemy import select

from app.db.models import MetricAnomaly
from tests.metrics.conftest import point
from tests.metrics.test_metric_rules import add_rule
from tests.replicas.conftest import replicas


async def send(guard, value: float) -> None:
    """A pass of B's evaluator loop (every second in a running guard), then the point, judged."""
    await guard.runtime.detection.evaluator.run_once()
    r = await guard.client.post(
        "/api/v1/metrics/batch", json=[point(value=value)], headers=await guard.headers("ingest")
    )
    assert r.status_code == 201, r.text
    await guard.runtime.detection.evaluator.run_once()


async def anomalies(guard) -> list[MetricAnomaly]:
    async with guard.session() as session:
        return list((await session.execute(select(MetricAnomaly).order_by(MetricAnomaly.id))).scalars())


async def test_a_rule_changed_through_one_replica_judges_the_points_of_another(pg_url, tmp_path):
    async with replicas(pg_url, tmp_path, [None, None]) as (a, b):
        await send(b, 50.0)  # B has loaded the rules (none yet) and judged a point
        rule = await add_rule(a, "threshold", {"operator": "gt", "value": 10})
        admin = await a.headers("admin")

        await send(b, 60.0)  # created through A, judged by B
        fired = await anomalies(b)
        assert [(x.rule_id, x.cleared_at) for x in fired] == [(rule["id"], None)]

        r = await a.client.patch(
            f"/api/v1/rules/{rule['id']}", json={"params": {"operator": "gt", "value": 100}}, headers=admin
        )
        assert r.status_code == 200, r.text
        await send(b, 70.0)  # edited through A: 70 is not above 100, the firing clears on B
        assert all(x.cleared_at is not None for x in await anomalies(b))
        await send(b, 150.0)
        firing = [x for x in await anomalies(b) if x.cleared_at is None]
        assert [x.evidence["threshold"] for x in firing] == [100.0]

        assert (await a.client.delete(f"/api/v1/rules/{rule['id']}", headers=admin)).status_code == 204
        before = len(await anomalies(b))
        await send(b, 50.0)  # deleted through A: B no longer judges by it (under it, 50 would clear
        await send(b, 500.0)  # the firing and 500 fire again)
        assert len(await anomalies(b)) == before
