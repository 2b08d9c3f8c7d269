"""Login, tokens and the attacks a JWT endpoint must shrug off."""

from __future__ import annotations

import time

import jwt
import pytest

from tests.conftest import TEST_PASSWORD, TEST_SECRET


def _forge(payload: dict, key: str = TEST_SECRET, alg: str = "HS256") -> str:
    return jwt.encode(payload, key, algorithm=alg)


def _claims(**overrides) -> dict:
    now = int(time.time())
    claims = {
        "sub": "admin-user",
        "jti": "x" * 32,
        "iat": now,
        "exp": now + 600,
        "iss": "pipeline-guard",
        "aud": "pipeline-guard-api",
        "ver": 0,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


async def _me(guard, token: str):
    return await guard.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})


async def test_login_me_logout(guard):
    token = await guard.token("operator")
    r = await _me(guard, token)
    assert r.status_code == 200
    assert r.json() == {
        "username": "operator-user",
        "role": "operator",
        "permissions": ["monitor_health", "read_metrics", "trigger_healing", "write_metrics"],
    }
    r = await guard.client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 204
    r = await _me(guard, token)
    assert r.status_code == 401
    assert r.json()["error"]["message"] == "token revoked"


async def test_token_response_shape(guard):
    await guard.add_user("alice", "viewer")
    r = await guard.client.post("/api/v1/auth/token", data={"username": "alice", "password": TEST_PASSWORD})
    body = r.json()
    assert r.status_code == 200 and body["token_type"] == "bearer" and body["expires_in"] == 3600
    decoded = jwt.decode(
        body["access_token"], TEST_SECRET, algorithms=["HS256"], audience="pipeline-guard-api"
    )
    assert {"exp", "iat", "sub", "jti", "iss", "aud"} <= set(decoded)


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda: jwt.encode(_claims(), key="", algorithm="none"), id="alg-none"),
        pytest.param(
            lambda: _forge(_claims(), key="another-secret-that-is-long-enough-1234567890"), id="wrong-key"
        ),
        pytest.param(lambda: _forge(_claims(exp=int(time.time()) - 3600)), id="expired"),
        pytest.param(lambda: _forge(_claims(exp=None)), id="missing-exp"),
        pytest.param(lambda: _forge(_claims(iss="someone-else")), id="wrong-issuer"),
        pytest.param(lambda: _forge(_claims(aud="another-api")), id="wrong-audience"),
        pytest.param(lambda: _forge(_claims(sub="nobody")), id="unknown-user"),
        pytest.param(lambda: "not.a.jwt", id="garbage"),
        pytest.param(lambda: _forge(_claims(), alg="HS512"), id="other-hmac-alg"),
    ],
)
async def test_forged_tokens_are_rejected(guard, make_token):
    await guard.token("admin")  # creates admin-user so "unknown user" is the only difference
    r = await _me(guard, make_token())
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"


async def test_tampered_payload_rejected(guard):
    token = await guard.token("viewer")
    header, payload, signature = token.split(".")
    import base64
    import json

    data = json.loads(base64.urlsafe_b64decode(payload + "=="))
    data["sub"] = "admin-user"
    forged_payload = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    r = await _me(guard, f"{header}.{forged_payload}.{signature}")
    assert r.status_code == 401


async def test_disabled_user_and_lowered_role_take_effect_immediately(guard):
    admin = await guard.headers("admin")
    await guard.add_user("bob", "operator")
    token = (
        await guard.client.post("/api/v1/auth/token", data={"username": "bob", "password": TEST_PASSWORD})
    ).json()["access_token"]
    bob = {"Authorization": f"Bearer {token}"}
    assert (await guard.client.get("/api/v1/components", headers=bob)).status_code == 200

    r = await guard.client.patch("/api/v1/users/bob", headers=admin, json={"role": "viewer"})
    assert r.status_code == 200 and r.json()["role"] == "viewer"
    assert (await guard.client.get("/api/v1/components", headers=bob)).status_code == 401  # old token void

    token = (
        await guard.client.post("/api/v1/auth/token", data={"username": "bob", "password": TEST_PASSWORD})
    ).json()["access_token"]
    bob = {"Authorization": f"Bearer {token}"}
    assert (await guard.client.post("/api/v1/healing/x", headers=bob)).status_code in (403, 404)
    r = await guard.client.patch("/api/v1/users/bob", headers=admin, json={"disabled": True})
    assert r.status_code == 200
    assert (await guard.client.get("/api/v1/components", headers=bob)).status_code == 401


async def test_login_failures_are_indistinguishable_and_throttled(guard):
    await guard.add_user("carol", "viewer")
    await guard.add_user("dave", "viewer", disabled=True)

    async def login(user, password):
        return await guard.client.post("/api/v1/auth/token", data={"username": user, "password": password})

    wrong = await login("carol", "wrong-password-xx")
    unknown = await login("nobody-here", "wrong-password-xx")
    disabled = await login("dave", TEST_PASSWORD)
    for r in (wrong, unknown, disabled):
        assert r.status_code == 401
        assert r.json()["error"]["message"] == "incorrect username or password"

    for _ in range(5):
        await login("carol", "wrong-password-xx")
    locked = await login("carol", TEST_PASSWORD)  # right password, but this address is locked out now
    assert locked.status_code == 401
    assert locked.json()["error"]["message"] == wrong.json()["error"]["message"]

    async with guard.session() as session:
        from sqlalchemy import select

        from app.db.models import User

        carol = (await session.execute(select(User).where(User.username == "carol"))).scalar_one()
        assert carol.failed_logins == 5  # attempts while throttled are refused without counting
        # The lock is per (account, address); the account itself backs off only after many more
        # failures from anywhere (tests/security/test_login_lockout.py).
        assert carol.locked_until is None


async def test_user_management(guard):
    admin = await guard.headers("admin")
    r = await guard.client.post(
        "/api/v1/users", headers=admin, json={"username": "erin", "password": "short", "role": "viewer"}
    )
    assert r.status_code == 422
    assert r.json()["error"]["details"]["fields"][0]["field"] == "body.password"
    r = await guard.client.post(
        "/api/v1/users",
        headers=admin,
        json={"username": "erin", "password": "long-enough-password", "role": "operator"},
    )
    assert r.status_code == 201 and "password" not in r.text and "hash" not in r.text
    assert (
        await guard.client.post(
            "/api/v1/users", headers=admin, json={"username": "erin", "password": "long-enough-password"}
        )
    ).status_code == 409
    r = await guard.client.get("/api/v1/users", headers=admin)
    assert {u["username"] for u in r.json()["items"]} >= {"admin-user", "erin"}
    r = await guard.client.post(
        "/api/v1/users/erin/password", headers=admin, json={"password": "another-long-password"}
    )
    assert r.status_code == 200
    r = await guard.client.post(
        "/api/v1/auth/token", data={"username": "erin", "password": "another-long-password"}
    )
    assert r.status_code == 200
    r = await guard.client.patch("/api/v1/users/admin-user", headers=admin, json={"disabled": True})
    assert r.status_code == 422  # cannot lock yourself out


async def test_security_disabled_acts_as_admin(db_url, tmp_path):
    from tests.conftest import make_settings, running_guard

    settings = make_settings(db_url, tmp_path, security={"enabled": False})
    async with running_guard(settings) as guard:
        r = await guard.client.get("/api/v1/auth/me")
        assert r.status_code == 200 and r.json()["role"] == "admin"


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "not-a-hash",
        "$argon2id$",
        "$argon2id$v=19$m=65536,t=3,p=4$AAAA$BBBB",
        "$2b$12$bcrypt-is-not-enabled",
    ],
)
def test_a_corrupt_password_hash_reads_as_a_wrong_password(stored):
    from app.auth.tokens import PasswordHasher

    hasher = PasswordHasher()
    assert hasher.verify(TEST_PASSWORD, stored) is False
    assert hasher.verify(TEST_PASSWORD, hasher.hash(TEST_PASSWORD)) is True
