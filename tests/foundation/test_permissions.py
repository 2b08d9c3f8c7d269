"""Every route x every role: a route without a declared permission fails this suite."""

from __future__ import annotations

import re

import pytest

from app.api.routes import AUTHENTICATED_PATHS, PUBLIC_PATHS, iter_api_routes, route_permission
from app.auth.permissions import ROLE_PERMISSIONS, Role


def _concrete(path: str) -> str:
    path = re.sub(r"\{[^}]+:int\}", "999999", path)  # integer ids: a missing one, not a 404 from routing
    return re.sub(r"\{[^}]+\}", "zz-missing", path)


def _routes(app):
    for route in iter_api_routes(app):
        for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
            yield method, route


async def test_every_route_declares_a_permission(guard):
    undeclared = []
    for method, route in _routes(guard.app):
        if route.path in PUBLIC_PATHS or route.path in AUTHENTICATED_PATHS:
            continue
        if route_permission(route) is None:
            undeclared.append(f"{method} {route.path}")
    assert undeclared == [], (
        "routes without a permission (use a Can... principal from app/api/deps.py): " + ", ".join(undeclared)
    )


async def test_route_role_table(guard):
    """Call each protected route as each role: allowed roles get past auth, others get 403, anonymous 401."""
    headers = {role: await guard.headers(role) for role in Role}
    checked = 0
    for method, route in _routes(guard.app):
        if route.path in PUBLIC_PATHS:
            continue
        permission = route_permission(route)
        url = _concrete(route.path)
        anonymous = await guard.client.request(method, url)
        assert anonymous.status_code == 401, (
            f"{method} {route.path} without a token -> {anonymous.status_code}"
        )
        assert anonymous.json()["error"]["type"] == "unauthorized"
        for role in Role:
            r = await guard.client.request(
                method, url, headers=headers[role], json={} if method in {"POST", "PUT", "PATCH"} else None
            )
            granted = ROLE_PERMISSIONS[role]
            if permission is None:
                allowed = True
            elif isinstance(permission, frozenset):  # a route accepting any of several permissions
                allowed = bool(permission & granted)
            else:
                allowed = permission in granted
            if allowed:
                assert r.status_code not in (401, 403), (
                    f"{role} {method} {route.path} -> {r.status_code} {r.text[:200]}"
                )
            else:
                assert r.status_code == 403, f"{role} {method} {route.path} -> {r.status_code}, expected 403"
                assert r.json()["error"]["type"] == "forbidden"
            checked += 1
            if route.path == "/api/v1/auth/logout":
                # logging out revoked that role's token; get a fresh one for later routes
                guard._tokens.pop(str(role), None)
                await guard.add_user(f"{role}-again-{checked}", role)
                token = (
                    await guard.client.post(
                        "/api/v1/auth/token",
                        data={
                            "username": f"{role}-again-{checked}",
                            "password": "correct-horse-battery-staple",
                        },
                    )
                ).json()["access_token"]
                headers[role] = {"Authorization": f"Bearer {token}"}
    assert checked >= 4 * 8


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        (Role.VIEWER, {"read_metrics", "monitor_health"}),
        (Role.OPERATOR, {"read_metrics", "monitor_health", "trigger_healing", "write_metrics"}),
        (
            Role.ADMIN,
            {
                "read_metrics",
                "write_metrics",
                "monitor_health",
                "trigger_healing",
                "manage_components",
                "admin_access",
            },
        ),
        (Role.INGEST, {"write_metrics"}),
    ],
)
def test_role_permission_mapping(role, expected):
    assert {p.value for p in ROLE_PERMISSIONS[role]} == expected
