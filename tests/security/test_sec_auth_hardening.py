"""Logins are throttled per account and address (someone guessing elsewhere cannot lock the real
user out), with a slower per-account back-off; re-enabling a user does not revive old tokens; the
public status page does not name healing targets."""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
from sqlalchemy import select

from app.db.models import HealingAttempt, User
from tests.conftest import TEST_PASSWORD, make_settings, running_guard


@asynccontextmanager
async def from_address(guard, address: str):
    transport = httpx.ASGITransport(app=guard.app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def _login(client, password: str, username: str = "root"):
    return await client.post("/api/v1/auth/token", data={"username": username, "password": password})


async def test_lockout_is_per_account_and_address(db_url, tmp_path):
    settings = make_settings(
        db_url, tmp_path, security={"login_max_failures": 5, "login_global_max_failures": 50}
    )
    async with running_guard(settings) as guard:
        await guard.add_user("root", "admin")
        async with (
            from_address(guard, "203.0.113.66") as attacker,
            from_address(guard, "198.51.100.7") as admin,
        ):
            for _ in range(8):
                assert (await _login(attacker, "guess-guess-guess")).status_code == 401
            refused = await _login(attacker, TEST_PASSWORD)  # the right password, from the guessing address
            assert refused.status_code == 401
            assert refused.json()["error"]["message"] == "incorrect username or password"
            assert (await _login(admin, TEST_PASSWORD)).status_code == 200  # the real admin is not locked out
            # Another account from the attacker's address is not affected either.
            await guard.add_user("other", "viewer")
            assert (await _login(attacker, TEST_PASSWORD, "other")).status_code == 200
        async with guard.session() as session:
            root = (await session.execute(select(User).where(User.username == "root"))).scalar_one()
        assert root.locked_until is None


async def test_many_addresses_trip_the_slower_account_back_off(db_url, tmp_path):
    settings = make_settings(
        db_url, tmp_path, security={"login_max_failures": 5, "login_global_max_failures": 8}
    )
    async with running_guard(settings) as guard:
        await guard.add_user("root", "admin")
        for i in range(4):  # 2 failures from each of 4 addresses: no address reaches its own limit
            async with from_address(guard, f"203.0.113.{i + 1}") as client:
                for _ in range(2):
                    assert (await _login(client, "guess-guess-guess")).status_code == 401
        async with from_address(guard, "198.51.100.7") as admin:
            assert (await _login(admin, TEST_PASSWORD)).status_code == 401  # the account backs off
        async with guard.session() as session:
            root = (await session.execute(select(User).where(User.username == "root"))).scalar_one()
        assert root.failed_logins == 8 and root.locked_until > datetime.now(UTC)


async def test_reenabling_a_user_does_not_revive_old_tokens(guard):
    admin = await guard.headers("admin")
    viewer = await guard.headers("viewer")
    assert (await guard.client.get("/api/v1/auth/me", headers=viewer)).status_code == 200
    r = await guard.client.patch("/api/v1/users/viewer-user", headers=admin, json={"disabled": True})
    assert r.status_code == 200, r.text
    assert (await guard.client.get("/api/v1/auth/me", headers=viewer)).status_code == 401
    r = await guard.client.patch("/api/v1/users/viewer-user", headers=admin, json={"disabled": False})
    assert r.status_code == 200, r.text
    assert (await guard.client.get("/api/v1/auth/me", headers=viewer)).status_code == 401
    fresh = await _login(guard.client, TEST_PASSWORD, "viewer-user")
    assert fresh.status_code == 200
    token = fresh.json()["access_token"]
    assert (
        await guard.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    ).status_code == 200


async def test_public_status_page_does_not_name_healing_targets(guard):
    async with guard.session() as session:
        session.add(
            HealingAttempt(
                incident_key="m:1",
                attempt_number=1,
                component="etl",
                strategy="webhook",
                state="succeeded",
                trigger="auto",
                detail="POST http://airflow.internal:8080/api/v1/dags/etl/dagRuns answered 200",
            )
        )
    page = await guard.client.get("/status")
    assert page.status_code == 200
    assert "webhook" in page.text
    assert "airflow.internal" not in page.text and "dagRuns" not in page.text
    # Operators still see it through the API.
    r = await guard.client.get("/api/v1/healing/attempts", headers=await guard.headers("operator"))
    assert "airflow.internal" in r.text
