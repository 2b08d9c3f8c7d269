"""The login throttle keeps a small key per (account, address), whatever name a caller sends.

The key used to hold the submitted username itself, for the whole lockout window, and unknown names
are counted too (nothing to enumerate): anyone, without logging in, could park a megabyte (a form
field's limit) in the guard's memory (or Redis) per request, about 500 MB per address within the
default limits. Measured against the live guard: 60 such logins grew it by 63 MB. Lockouts per
account and address work as before, names matched ignoring case and surrounding spaces."""

from __future__ import annotations

from tests.conftest import TEST_PASSWORD, make_settings, running_guard

MAX_KEY_CHARS = 200


def _login_keys(guard) -> list[str]:
    windows = guard.runtime.limiter.memory._windows  # the throttle's in-memory state
    return [key for (group, key) in windows if group == "login"]


async def test_huge_usernames_leave_small_keys(guard):
    for i in range(20):
        response = await guard.client.post(
            "/api/v1/auth/token", data={"username": f"{i}-" + "x" * 500_000, "password": "wrong-password"}
        )
        assert response.status_code == 401, response.text[:200]
        assert response.json()["error"]["message"] == "incorrect username or password"
    keys = _login_keys(guard)
    assert len(keys) == 20
    assert max(len(key) for key in keys) <= MAX_KEY_CHARS


async def test_the_lockout_still_matches_the_account_ignoring_case_and_spaces(db_url, tmp_path):
    settings = make_settings(
        db_url, tmp_path, security={"login_max_failures": 3, "login_global_max_failures": 50}
    )
    async with running_guard(settings) as guard:
        await guard.add_user("Root", "admin")
        for name in ("root", " ROOT", "Root "):
            wrong = await guard.client.post(
                "/api/v1/auth/token", data={"username": name, "password": "nope-nope"}
            )
            assert wrong.status_code == 401
        locked = await guard.client.post(
            "/api/v1/auth/token", data={"username": "Root", "password": TEST_PASSWORD}
        )
        assert locked.status_code == 401, locked.text
        assert len(_login_keys(guard)) == 1
