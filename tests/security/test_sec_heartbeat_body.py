"""A heartbeat's body is read as typed: ``duration_seconds: false`` (or ``true``, or ``"30"``) is a 422
naming the field, not a run of 0 (or 1, or 30) seconds recorded against the job's min/max runtime.
Found by schemathesis run as a viewer against the live guard."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("duration", [False, True, "30", [30], {"s": 30}])
async def test_a_duration_that_is_not_a_number_is_refused(guard, duration):
    admin = await guard.headers("admin")
    created = await guard.client.post(
        "/api/v1/components",
        headers=admin,
        json={"name": "etl", "check": {"kind": "heartbeat", "period": 60}},
    )
    assert created.status_code == 201, created.text
    response = await guard.client.post(
        "/api/v1/components/etl/heartbeat",
        headers=admin,
        json={"status": "success", "duration_seconds": duration},
    )
    assert response.status_code == 422, response.text
    assert [f["field"] for f in response.json()["error"]["details"]["fields"]] == ["body.duration_seconds"]
    state = (await guard.client.get("/api/v1/components/etl", headers=admin)).json()["state"]
    assert state["last_ping_at"] is None


@pytest.mark.parametrize("duration", [0, 30, 12.5])
async def test_numbers_still_count(guard, duration):
    admin = await guard.headers("admin")
    created = await guard.client.post(
        "/api/v1/components",
        headers=admin,
        json={"name": "etl", "check": {"kind": "heartbeat", "period": 60}},
    )
    assert created.status_code == 201, created.text
    response = await guard.client.post(
        "/api/v1/components/etl/heartbeat", headers=admin, json={"status": "start"}
    )
    assert response.status_code == 200, response.text
    response = await guard.client.post(
        "/api/v1/components/etl/heartbeat",
        headers=admin,
        json={"status": "success", "duration_seconds": duration},
    )
    assert response.status_code == 200, response.text
    assert response.json()["duration_seconds"] == duration
