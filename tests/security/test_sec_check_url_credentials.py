"""An http check may carry credentials in its URL (``user:password@``) or an ``Authorization`` header,
not both: aiohttp refuses to send such a request, so the check was stored (201) and then every probe
failed with "ValueError: Cannot combine AUTHORIZATION header with ... credentials encoded in URL"
(found on a live guard through ``pipeline-guard components show``). Now the write is a 422 naming the
header, and nothing is stored; either one alone is still accepted."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("header", ["Authorization", "authorization"])
async def test_url_credentials_and_an_authorization_header_are_refused_together(guard, header):
    admin = await guard.headers("admin")
    check = {
        "kind": "http",
        "url": "http://probe:s3cret@127.0.0.1:9/health",
        "headers": {header: "Bearer abc"},
    }
    response = await guard.client.post(
        "/api/v1/components", headers=admin, json={"name": "web", "check": check}
    )
    assert response.status_code == 422, response.text
    problems = response.json()["error"]["details"]["problems"]
    assert [p.split(":")[0] for p in problems] == [f"check.headers.{header}"], problems
    assert "s3cret" not in response.text and "Bearer abc" not in response.text
    listed = (await guard.client.get("/api/v1/components", headers=admin)).json()
    assert listed["total"] == 0

    created = await guard.client.post(
        "/api/v1/components",
        headers=admin,
        json={"name": "web", "check": {"kind": "http", "url": "http://127.0.0.1:9/health"}},
    )
    assert created.status_code == 201, created.text
    patched = await guard.client.patch("/api/v1/components/web", headers=admin, json={"check": check})
    assert patched.status_code == 422, patched.text


@pytest.mark.parametrize(
    "check",
    [
        {"kind": "http", "url": "http://probe:s3cret@127.0.0.1:9/health"},
        {"kind": "http", "url": "http://127.0.0.1:9/health", "headers": {"Authorization": "Bearer abc"}},
    ],
)
async def test_either_alone_is_accepted(guard, check):
    admin = await guard.headers("admin")
    response = await guard.client.post(
        "/api/v1/components", headers=admin, json={"name": "web", "check": check}
    )
    assert response.status_code == 201, response.text
