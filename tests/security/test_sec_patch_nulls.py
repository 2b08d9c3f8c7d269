"""A partial update that sends ``null`` for a field the component cannot be without (labels,
description, critical, enabled) is a 422 naming the field, and changes nothing. ``labels: null`` was
stored and then failed the response's validation (a 500); the others reached the database's NOT
NULL constraint and came back as a misleading 409 "conflict"."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("field", ["labels", "description", "critical", "enabled"])
async def test_null_for_a_required_field_is_a_422_and_changes_nothing(guard, field):
    admin = await guard.headers("admin")
    created = await guard.client.post(
        "/api/v1/components",
        headers=admin,
        json={"name": "etl", "labels": {"team": "data"}, "check": {"kind": "heartbeat", "period": 60}},
    )
    assert created.status_code == 201, created.text
    before = created.json()
    response = await guard.client.patch(
        "/api/v1/components/etl", headers=admin, json={"endpoint": "http://changed.example", field: None}
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert set(error) == {"type", "message", "details", "timestamp"}
    assert [f["field"] for f in error["details"]["fields"]] == [f"body.{field}"]
    after = (await guard.client.get("/api/v1/components/etl", headers=admin)).json()
    assert after == before


async def test_null_still_removes_what_may_be_absent(guard):
    admin = await guard.headers("admin")
    created = await guard.client.post(
        "/api/v1/components",
        headers=admin,
        json={"name": "etl", "endpoint": "http://etl.example", "check": {"kind": "heartbeat", "period": 60}},
    )
    assert created.status_code == 201, created.text
    response = await guard.client.patch(
        "/api/v1/components/etl",
        headers=admin,
        json={"endpoint": None, "check": None, "depends_on": None, "labels": {"team": "ml"}},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["endpoint"] is None and body["check"] is None and body["depends_on"] == []
    assert body["labels"] == {"team": "ml"} and body["version"] == 2


@pytest.mark.parametrize("change", [{"enabled": 0}, {"critical": "true"}, {"critical": 1}, {"enabled": "no"}])
async def test_no_lax_coercion_to_booleans(guard, change):
    admin = await guard.headers("admin")
    created = await guard.client.post(
        "/api/v1/components",
        headers=admin,
        json={"name": "etl", "check": {"kind": "heartbeat", "period": 60}},
    )
    assert created.status_code == 201, created.text
    refused = await guard.client.patch("/api/v1/components/etl", headers=admin, json=change)
    assert refused.status_code == 422, refused.text
    again = await guard.client.post(
        "/api/v1/components", headers=admin, json={"name": "etl2", "check": None, **change}
    )
    assert again.status_code == 422, again.text
    after = (await guard.client.get("/api/v1/components/etl", headers=admin)).json()
    assert after == created.json()
