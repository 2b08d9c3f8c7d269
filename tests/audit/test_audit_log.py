"""Every control-plane write leaves an audit row (walked over the routes); audit API; security stats."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from app.api.routes import iter_api_routes
from app.audit.service import AuditService
from app.db.models import AuditEntry

WRITE = {"POST", "PUT", "PATCH", "DELETE"}
NOT_AUDITED = {"/api/v1/auth/token"}


async def audit_rows(guard):
    async with guard.session() as session:
        return list((await session.execute(select(AuditEntry).order_by(AuditEntry.id))).scalars())


async def test_every_write_route_is_audited(audited):
    admin = await audited.headers("admin")
    routes = [
        (m, r.path)
        for r in iter_api_routes(audited.app)
        for m in sorted(r.methods)
        if m in WRITE and r.path.startswith("/api/v1/") and r.path not in NOT_AUDITED
    ]
    assert len(routes) >= 15
    routes.sort(key=lambda mr: mr[1] == "/api/v1/auth/logout")  # logging out revokes the admin token: last
    for method, template in routes:
        path = re.sub(r"\{[^}]+\}", "1", template)
        before = len(await audit_rows(audited))
        # Attempts are audited with their status code, whatever it is (401 unauthenticated, 404, 422...).
        r = await audited.client.request(method, path, json={})
        r2 = await audited.client.request(method, path, headers=admin, json={})
        rows = (await audit_rows(audited))[before:]
        assert [row.action for row in rows] == [f"{method} {template}"] * 2, (method, template)
        assert [row.status_code for row in rows] == [r.status_code, r2.status_code]
        assert rows[0].username is None
        if template != "/api/v1/integrations/alertmanager":
            assert rows[1].username == "admin-user" and rows[1].role == "admin", (
                method,
                template,
                r2.status_code,
                r2.text,
            )
        assert rows[1].request_id == r2.headers["x-request-id"]
        if "{" in template:
            assert set(rows[1].target.values()) == {"1"}
    # Reads are not audited; the login form (with its password) is not either.
    before = len(await audit_rows(audited))
    await audited.client.get("/api/v1/alerts", headers=admin)
    await audited.client.post("/api/v1/auth/token", data={"username": "x", "password": "y"})
    assert len(await audit_rows(audited)) == before


async def test_successful_write_has_summary_and_filters(audited):
    admin = await audited.headers("admin")
    r = await audited.client.post(
        "/api/v1/components", headers=admin, json={"name": "etl", "labels": {"a": "b"}}
    )
    assert r.status_code == 201
    r = await audited.client.post(
        "/api/v1/users",
        headers=admin,
        json={"username": "bob", "password": "a-long-password-123", "role": "viewer"},
    )
    r = await audited.client.get("/api/v1/audit", headers=admin, params={"action": "/api/v1/components"})
    assert r.status_code == 200
    (item,) = r.json()["items"]
    assert item["status_code"] == 201 and item["client"] == "127.0.0.1"
    assert item["summary"]["request"]["name"] == "etl"
    r = await audited.client.get("/api/v1/audit", headers=admin, params={"action": "/api/v1/users"})
    assert "a-long-password-123" not in r.text
    r = await audited.client.get(
        "/api/v1/audit", headers=admin, params={"username": "admin-user", "status_code": 201}
    )
    assert r.json()["total"] == 2
    assert (
        await audited.client.get("/api/v1/audit", headers=await audited.headers("operator"))
    ).status_code == 403

    async with audited.session() as session:
        assert await AuditService(session).prune(datetime.now(UTC) - timedelta(days=1), 100) == (0, 0)
        assert (await AuditService(session).prune(datetime.now(UTC) + timedelta(seconds=1), 100))[0] >= 2


async def test_security_stats(audited):
    admin = await audited.headers("admin")
    await audited.add_user("mallory", "viewer")
    for _ in range(5):
        r = await audited.client.post("/api/v1/auth/token", data={"username": "mallory", "password": "wrong"})
        assert r.status_code == 401
    viewer = await audited.headers("viewer")
    assert (await audited.client.post("/api/v1/auth/logout", headers=viewer)).status_code == 204
    await audited.client.post("/api/v1/channels", headers=await audited.headers("operator"), json={})
    r = await audited.client.get("/api/v1/security/stats", headers=admin)
    assert r.status_code == 200, r.text
    stats = r.json()
    assert stats["failed_logins_total"] == 5 and stats["failed_logins_current"] == 5
    # five failures lock mallory out from this address only, not the account (per-address throttle)
    assert stats["locked_accounts"] == 0 and stats["revoked_tokens"] == 1
    assert stats["rate_limit_rejections"] == 0 and stats["denied_writes_24h"] == 1
    assert (await audited.client.get("/api/v1/security/stats", headers=viewer)).status_code == 401
