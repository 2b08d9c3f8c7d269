"""``PATCH /api/v1/users/{name}`` reads ``disabled`` as a boolean only: ``"false"``, ``0``, ``1`` or
``"yes"`` are a 422 naming the field and change nothing. They used to be coerced (``"no"`` and ``0``
read as false, ``1`` as true); components and channels were strict already. The user-management
routes are left out of the schema fuzz (they could lock the fuzzer out), so this is checked here."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("value", ["false", "true", 0, 1, "yes", "no"])
async def test_disabled_must_be_a_boolean(guard, value):
    admin = await guard.headers("admin")
    await guard.add_user("analyst", "viewer")
    before = (await guard.client.get("/api/v1/users/analyst", headers=admin)).json()
    response = await guard.client.patch("/api/v1/users/analyst", headers=admin, json={"disabled": value})
    assert response.status_code == 422, response.text
    assert [f["field"] for f in response.json()["error"]["details"]["fields"]] == ["body.disabled"]
    assert (await guard.client.get("/api/v1/users/analyst", headers=admin)).json() == before


async def test_booleans_and_roles_still_apply(guard):
    admin = await guard.headers("admin")
    await guard.add_user("analyst", "viewer")
    response = await guard.client.patch(
        "/api/v1/users/analyst", headers=admin, json={"disabled": True, "role": "operator"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["disabled"] is True and response.json()["role"] == "operator"
