"""Enum-like filters of the list endpoints refuse unknown values: a typo (``status=fring``) is a 422
in the error envelope naming the allowed values, never an empty (or unfiltered) page."""

from __future__ import annotations

import pytest

CASES = [
    ("/api/v1/alerts", "status", ["firing", "acknowledged", "silenced", "resolved", "all"]),
    ("/api/v1/alerts", "severity", ["info", "warning", "critical"]),
    ("/api/v1/components", "status", ["unknown", "healthy", "degraded", "critical", "recovering", "failed"]),
    ("/api/v1/notifications", "status", ["pending", "sending", "delivered", "failed"]),
    (
        "/api/v1/healing/attempts",
        "state",
        ["pending_approval", "running", "verifying", "succeeded", "failed", "interrupted", "cancelled"],
    ),
]


@pytest.mark.parametrize(("path", "name", "allowed"), CASES)
async def test_unknown_filter_value_is_refused_naming_the_allowed_ones(guard, path, name, allowed):
    headers = await guard.headers("admin")
    refused = await guard.client.get(path, params={name: "bogus"}, headers=headers)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["type"] == "validation_error"
    (field,) = error["details"]["fields"]
    assert field["field"].startswith(f"query.{name}")
    for value in allowed:
        assert f"'{value}'" in field["message"], field["message"]
    for value in allowed:
        ok = await guard.client.get(path, params={name: value}, headers=headers)
        assert ok.status_code == 200, (value, ok.text)


async def test_alert_status_filter_checks_every_repeated_value(guard):
    headers = await guard.headers("viewer")
    ok = await guard.client.get("/api/v1/alerts?status=firing&status=resolved", headers=headers)
    assert ok.status_code == 200, ok.text
    refused = await guard.client.get("/api/v1/alerts?status=firing&status=fired", headers=headers)
    assert refused.status_code == 422, refused.text
    assert "'acknowledged'" in refused.text
