"""Usernames are unique ignoring case: ``ADMIN`` beside ``admin`` would read as one person in the
audit log (and share the login throttle's key, which ignores case). A 409 in the envelope, nothing
created; logins still need the exact name."""

from __future__ import annotations

import pytest

from tests.conftest import TEST_PASSWORD


@pytest.mark.parametrize("name", ["ADMIN-USER", "Admin-User", "admin-USER"])
async def test_a_name_differing_only_in_case_is_a_conflict(guard, name):
    admin = await guard.headers("admin")  # creates "admin-user"
    before = (await guard.client.get("/api/v1/users", headers=admin)).json()
    response = await guard.client.post(
        "/api/v1/users",
        headers=admin,
        json={"username": name, "password": "a-long-password-123", "role": "admin"},
    )
    assert response.status_code == 409, response.text
    assert set(response.json()["error"]) == {"type", "message", "details", "timestamp"}
    assert "admin-user" in response.json()["error"]["message"]
    assert (await guard.client.get("/api/v1/users", headers=admin)).json() == before
    other = await guard.client.post(
        "/api/v1/users", headers=admin, json={"username": "admin-user-2", "password": "a-long-password-123"}
    )
    assert other.status_code == 201, other.text
    wrong_case = await guard.client.post(
        "/api/v1/auth/token", data={"username": name, "password": TEST_PASSWORD}
    )
    assert wrong_case.status_code == 401
