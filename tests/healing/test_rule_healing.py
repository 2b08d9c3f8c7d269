"""Rules that heal (``heal: true``): the rule firing is an incident of its component that the
recovery policy acts on (the Kubernetes strategy's ``scale`` against the kmock API emulator on
127.0.0.1, through a real kubeconfig file), and the rule resolving closes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from app.db.models import Alert, Incident
from app.db.models.healing import HealingAttempt
from tests.healing.conftest import wait_until
from tests.healing.test_kubernetes_strategy import write_kubeconfig
from tests.monitoring.conftest import mon_settings, monitored

DEPLOY = "/apis/apps/v1/namespaces/ml/deployments/trainer"


async def send(guard, value: float, ts: datetime) -> None:
    r = await guard.client.post(
        "/api/v1/metrics/batch",
        headers=await guard.headers("ingest"),
        json=[
            {
                "component": "trainer",
                "metric_name": "queue_depth",
                "value": value,
                "timestamp": ts.isoformat(),
            }
        ],
    )
    assert r.status_code == 201, r.text


async def test_rule_heal_scales_up_within_bounds_and_closes_when_resolved(db_url, tmp_path, kmock):

    kmock.objects[kmock.resource("apps/v1/deployments"), "ml", "trainer"] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "trainer", "namespace": "ml"},
        "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "trainer"}}}},
    }
    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(kubeconfig, str(kmock.url).rstrip("/"))
    settings = mon_settings(db_url, tmp_path)
    async with monitored(settings) as (guard, _scheduler):
        engine = guard.runtime.healing.engine
        h = await guard.headers("admin")
        r = await guard.client.post(
            "/api/v1/components",
            headers=h,
            json={
                "name": "trainer",
                "recovery": {
                    "strategies": [
                        {
                            "kind": "kubernetes",
                            "action": "scale",
                            "workload_kind": "deployment",
                            "namespace": "ml",
                            "name": "trainer",
                            "step": 1,
                            "min_replicas": 1,
                            "max_replicas": 3,
                            "kubeconfig": str(kubeconfig),
                            "context": "kmock",
                        }
                    ],
                    "verify_timeout": 600,
                },
            },
        )
        assert r.status_code == 201, r.text
        body = {
            "name": "queue-high",
            "component": "trainer",
            "metric_name": "queue_depth",
            "kind": "threshold",
            "params": {"operator": "gt", "value": 100},
            "severity": "warning",
            "heal": True,
        }
        r = await guard.client.post("/api/v1/rules", headers=h, json=body)
        assert r.status_code == 201 and r.json()["heal"] is True, r.text
        evaluator = guard.runtime.detection.evaluator
        t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)

        await send(guard, 500, t0)
        await evaluator.run_once()
        async with guard.session() as session:
            [incident] = (await session.execute(select(Incident))).scalars().all()
        assert incident.closed_at is None and incident.opening_status == "critical"
        assert "queue-high" in incident.reason
        [started] = await engine.evaluate()

        async def acted() -> bool:
            async with guard.session() as session:
                return (await session.get(HealingAttempt, started)).state != "running"

        await wait_until(acted, timeout=30)
        deployment = kmock.objects[kmock.resource("apps/v1/deployments"), "ml", "trainer"]
        assert deployment["spec"]["replicas"] == 3  # scaled up by one step, within max_replicas
        assert await engine.evaluate() == []  # one action per incident while it verifies

        await send(guard, 5, t0 + timedelta(seconds=10))  # the queue drains: the rule resolves
        await evaluator.run_once()
        async with guard.session() as session:
            incident = await session.get(Incident, incident.id)
            attempt = await session.get(HealingAttempt, started)
            alerts = (
                (await session.execute(select(Alert).where(Alert.component == "trainer"))).scalars().all()
            )
        assert incident.closed_at is not None and "resolved" in incident.close_reason
        assert attempt.state == "succeeded"
        assert alerts and all(a.status == "resolved" for a in alerts)
        await engine.stop()


async def test_rule_without_heal_opens_no_incident(guard):
    h = await guard.headers("admin")
    r = await guard.client.post("/api/v1/components", headers=h, json={"name": "trainer"})
    assert r.status_code == 201, r.text
    r = await guard.client.post(
        "/api/v1/rules",
        headers=h,
        json={
            "name": "queue-high",
            "component": "trainer",
            "metric_name": "queue_depth",
            "kind": "threshold",
            "params": {"operator": "gt", "value": 100},
        },
    )
    assert r.status_code == 201 and r.json()["heal"] is False
    r = await guard.client.patch(f"/api/v1/rules/{r.json()['id']}", headers=h, json={"heal": "sometimes"})
    assert r.status_code == 422 and r.json()["error"]["type"]
    await send(guard, 500, datetime.now(UTC) - timedelta(seconds=5))
    await guard.runtime.detection.evaluator.run_once()
    async with guard.session() as session:
        assert (await session.execute(select(Incident))).scalars().all() == []
