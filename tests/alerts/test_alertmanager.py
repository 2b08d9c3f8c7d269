"""The real Alertmanager captures in ../shared/fixtures/alertmanager map to guard alerts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.alerts.conftest import AM_TOKEN
from tests.conftest import running_guard

FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "alertmanager"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


AUTH = {"Authorization": f"Bearer {AM_TOKEN}"}
URL = "/api/v1/integrations/alertmanager"


async def test_token_required(aguard):
    body = fixture("firing_from_prometheus.json")
    assert (await aguard.client.post(URL, json=body)).status_code == 401
    r = await aguard.client.post(URL, json=body, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.json()["error"]["type"] == "unauthorized"
    # A user's JWT is not the receiver's token either.
    assert (
        await aguard.client.post(URL, json=body, headers=await aguard.headers("admin"))
    ).status_code == 401


async def test_receiver_disabled_without_token(db_url, tmp_path):
    from tests.conftest import make_settings

    async with running_guard(make_settings(db_url, tmp_path)) as g:
        r = await g.client.post(
            URL, json=fixture("firing_from_prometheus.json"), headers={"Authorization": "Bearer "}
        )
        assert r.status_code == 401


async def test_fixtures_map_to_alerts(aguard):
    admin = await aguard.headers("admin")
    r = await aguard.client.post("/api/v1/components", headers=admin, json={"name": "guard"})
    assert r.status_code == 201, r.text
    component_id = r.json()["id"]

    r = await aguard.client.post(URL, json=fixture("firing_from_prometheus.json"), headers=AUTH)
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["received"] == 1 and result["unknown_components"] == []
    assert result["results"][0] == {
        "fingerprint": "am:fa2d7cfaa3a1ffad",
        "component": "guard",
        "known_component": True,
        "action": "opened",
        "alert_id": result["results"][0]["alert_id"],
    }
    alert_id = result["results"][0]["alert_id"]
    r = await aguard.client.post(URL, json=fixture("firing_from_prometheus.json"), headers=AUTH)
    assert r.json()["results"][0]["action"] == "refreshed"

    # No component/job/instance label: reported as unknown, not crashed on.
    r = await aguard.client.post(URL, json=fixture("firing_from_amtool.json"), headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["unknown_components"] == ["unknown"]

    r = await aguard.client.get(f"/api/v1/alerts/{alert_id}", headers=admin)
    alert = r.json()
    assert alert["component"] == "guard" and alert["component_id"] == component_id
    assert alert["severity"] == "critical" and alert["message"] == "Pipeline 127.0.0.1:18080 unhealthy"
    assert alert["count"] == 2 and alert["source"] == "alertmanager"
    assert alert["labels"]["alertname"] == "PipelineUnhealthy"
    assert alert["metadata"]["alertname"] == "PipelineUnhealthy"

    r = await aguard.client.post(URL, json=fixture("resolved_from_prometheus.json"), headers=AUTH)
    assert r.json()["results"][0]["action"] == "resolved"
    r = await aguard.client.get(f"/api/v1/alerts/{alert_id}", headers=admin)
    assert r.json()["status"] == "resolved"
    assert r.json()["resolution_action"].startswith("resolved by Alertmanager")
    r = await aguard.client.post(URL, json=fixture("resolved_from_prometheus.json"), headers=AUTH)
    assert r.json()["results"][0]["action"] == "not_active"


@pytest.mark.parametrize("labels", [["component", "deployment", "job"]])
async def test_component_label_is_configurable(db_url, tmp_path, labels):
    from tests.conftest import make_settings

    settings = make_settings(
        db_url,
        tmp_path,
        security={"alertmanager_token": AM_TOKEN},
        alerting={"alertmanager_component_labels": labels},
    )
    async with running_guard(settings) as g:
        admin = await g.headers("admin")
        await g.client.post("/api/v1/components", headers=admin, json={"name": "ingest-worker"})
        r = await g.client.post(URL, json=fixture("firing_from_amtool.json"), headers=AUTH)
        assert r.json()["results"][0]["component"] == "ingest-worker"
        assert r.json()["results"][0]["known_component"] is True
        r = await g.client.post(URL, content=b'{"alerts": [{"status": "odd"}]}', headers=AUTH)
        assert r.status_code == 422 and r.json()["error"]["type"] == "validation_error"


async def test_firing_alert_heals_per_the_components_policy_and_resolved_closes(alert_settings):
    """A firing Alertmanager alert for a component with a recovery policy opens an incident the healing
    engine acts on (here in dry-run, so nothing runs); Alertmanager's resolve closes that incident."""
    import asyncio

    from sqlalchemy import select

    from app.db.models import Incident
    from app.platform.compose import default_services

    async with running_guard(alert_settings, build_services=default_services) as g:
        admin = await g.headers("admin")
        r = await g.client.post(
            "/api/v1/components",
            headers=admin,
            json={"name": "guard", "recovery": {"strategies": [{"kind": "notify_only"}], "dry_run": True}},
        )
        assert r.status_code == 201, r.text
        r = await g.client.post(URL, json=fixture("firing_from_prometheus.json"), headers=AUTH)
        assert r.status_code == 200, r.text
        alert_id = r.json()["results"][0]["alert_id"]
        alert = (await g.client.get(f"/api/v1/alerts/{alert_id}", headers=admin)).json()
        assert alert["incident_id"] is not None

        attempts: list = []
        for _ in range(100):
            attempts = (
                await g.client.get("/api/v1/healing/attempts", headers=admin, params={"component": "guard"})
            ).json()["items"]
            if attempts:
                break
            await asyncio.sleep(0.1)
        assert attempts, "healing did not pick up the Alertmanager incident"
        assert attempts[0]["incident_id"] == alert["incident_id"]
        assert attempts[0]["state"] == "dry_run"

        # A second delivery of the same firing alert opens no second incident.
        await g.client.post(URL, json=fixture("firing_from_prometheus.json"), headers=AUTH)
        r = await g.client.post(URL, json=fixture("resolved_from_prometheus.json"), headers=AUTH)
        assert r.json()["results"][0]["action"] == "resolved"
        async with g.session() as session:
            incidents = (await session.execute(select(Incident))).scalars().all()
        assert len(incidents) == 1 and incidents[0].closed_at is not None
        assert "Alertmanager" in incidents[0].reason
