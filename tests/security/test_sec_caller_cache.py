"""Who is behind a token is remembered for a second (``app/auth/callers.py``), and never past a
change: on the replica that made it, a disabled user, a changed role or password and a revoked token
are refused on the very next request; another replica refuses them once its entry has lived its
``TTL_S``."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from sqlalchemy import event, update

from app.auth.callers import TTL_S, CallerCache
from app.db.models import User
from tests.conftest import TEST_PASSWORD
from tests.security.serve_process import admin_headers, guard_process


async def _login(client, username: str) -> dict[str, str]:
    response = await client.post("/api/v1/auth/token", data={"username": username, "password": TEST_PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def test_a_stream_of_requests_with_one_token_looks_the_caller_up_once(guard):
    await guard.add_user("pipeline", "ingest")
    job = await _login(guard.client, "pipeline")
    lookups = []

    def count(_conn, _cursor, statement, *_args) -> None:
        if "revoked_tokens" in statement and "FROM users" in statement:
            lookups.append(statement)

    event.listen(guard.runtime.engine.sync_engine, "before_cursor_execute", count)
    guard.runtime.callers.ttl = 600.0  # however slow the machine, the stream stays within one entry
    body = {"points": [{"component": "etl", "metric_name": "rows", "value": 1.0}]}
    for _ in range(5):
        r = await guard.client.post("/api/v1/metrics/batch", headers=job, json=body)
        assert r.status_code == 201, r.text
    assert len(lookups) == 1


CHANGES = {
    "disabled": lambda name: ("PATCH", f"/api/v1/users/{name}", {"disabled": True}),
    "role lowered": lambda name: ("PATCH", f"/api/v1/users/{name}", {"role": "viewer"}),
    "password reset": lambda name: ("POST", f"/api/v1/users/{name}/password", {"password": "n" * 20}),
}


@pytest.mark.parametrize("change", list(CHANGES))
async def test_a_change_to_the_user_is_refused_on_the_next_request(guard, change):
    admin = await guard.headers("admin")
    await guard.add_user("bob", "operator")
    bob = await _login(guard.client, "bob")
    guard.runtime.callers.ttl = 600.0  # remembered far longer than the test: only the change can end it
    assert (await guard.client.get("/api/v1/components", headers=bob)).status_code == 200
    method, path, body = CHANGES[change]("bob")
    assert (await guard.client.request(method, path, headers=admin, json=body)).status_code == 200
    r = await guard.client.get("/api/v1/components", headers=bob)
    assert r.status_code == 401, r.text


async def test_a_revoked_token_is_refused_on_the_next_request(guard):
    await guard.add_user("carol", "viewer")
    carol = await _login(guard.client, "carol")
    guard.runtime.callers.ttl = 600.0
    assert (await guard.client.get("/api/v1/auth/me", headers=carol)).status_code == 200
    assert (await guard.client.post("/api/v1/auth/logout", headers=carol)).status_code == 204
    r = await guard.client.get("/api/v1/auth/me", headers=carol)
    assert r.status_code == 401 and r.json()["error"]["message"] == "token revoked"


async def test_a_change_made_elsewhere_is_refused_once_the_entry_has_lived_its_time(guard):
    """Another replica (here: a write straight to the database) changes the user: this replica's
    entry ends after its TTL and the next request reads the change."""
    await guard.add_user("dave", "operator")
    dave = await _login(guard.client, "dave")
    guard.runtime.callers.ttl = 0.2
    assert (await guard.client.get("/api/v1/components", headers=dave)).status_code == 200
    async with guard.session() as session:
        await session.execute(update(User).where(User.username == "dave").values(disabled=True))
    await asyncio.sleep(0.25)
    assert (await guard.client.get("/api/v1/components", headers=dave)).status_code == 401


def test_a_lookup_under_way_when_a_change_commits_is_not_kept():
    cache = CallerCache()
    generation = cache.generation  # a request starts reading the caller ...
    cache.forget_all()  # ... an admin's change commits meanwhile ...
    cache.put("bob", "jti", (1, "bob", "operator", False, 0, False), generation)  # ... its read ends
    assert cache.get("bob", "jti") is None


def test_the_memory_is_bounded():
    cache = CallerCache(max_entries=3)
    for i in range(10):
        cache.put(f"user{i}", "jti", (i, f"user{i}", "viewer", False, 0, False), cache.generation)
    assert cache.get("user9", "jti") is not None and cache.get("user0", "jti") is None
    assert len(cache._entries) == 3


def test_two_real_replicas_disabled_user(db_url, tmp_path):
    """Two served guards on one Postgres: a user disabled through one is refused by that one on the
    next request, and by the other once its entry has lived ``TTL_S``."""
    if not db_url.startswith("postgresql"):
        pytest.skip("one guard per SQLite database")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with guard_process(db_url, tmp_path / "a") as a, guard_process(db_url, tmp_path / "b") as b:
        admin = admin_headers(a)
        created = httpx.post(
            f"{a}/api/v1/users",
            headers=admin,
            json={"username": "erin", "password": TEST_PASSWORD, "role": "operator"},
            timeout=30,
        )
        assert created.status_code == 201, created.text
        token = httpx.post(
            f"{a}/api/v1/auth/token", data={"username": "erin", "password": TEST_PASSWORD}, timeout=30
        ).json()["access_token"]
        erin = {"Authorization": f"Bearer {token}"}
        for base in (a, b):  # both replicas remember erin
            assert httpx.get(f"{base}/api/v1/components", headers=erin, timeout=30).status_code == 200
        r = httpx.patch(f"{a}/api/v1/users/erin", headers=admin, json={"disabled": True}, timeout=30)
        assert r.status_code == 200, r.text
        assert httpx.get(f"{a}/api/v1/components", headers=erin, timeout=30).status_code == 401
        time.sleep(TTL_S + 0.1)
        assert httpx.get(f"{b}/api/v1/components", headers=erin, timeout=30).status_code == 401
