"""Malformed input is a 4xx in the error envelope, never a 500: JSON nested a thousand deep (metrics
and the audit log, whose row must not be lost), a NUL in a metric label (Postgres text cannot hold
it), and validly signed tokens whose claims have the wrong types or absurd values."""

from __future__ import annotations

from datetime import UTC, datetime

import jwt
import pytest
from sqlalchemy import select

from app.db.models import AuditEntry
from tests.conftest import TEST_SECRET


def _assert_envelope(response, status: int) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"type", "message", "details", "timestamp"}


@pytest.mark.parametrize("path", ["/api/v1/metrics", "/api/v1/metrics/batch"])
async def test_deeply_nested_metrics_json_is_a_422_and_still_audited(guard, path):
    headers = {**await guard.headers("operator"), "Content-Type": "application/json"}
    deep = "[" * 1000 + "]" * 1000
    bodies = [
        deep,
        '{"points": ' + deep + "}",
        '{"component": "etl", "metric_name": "rows", "value": 1, "labels": '
        + '{"a": ' * 1000
        + "1"
        + "}" * 1001,
    ]
    for body in bodies:
        _assert_envelope(await guard.client.post(path, headers=headers, content=body), 422)
    async with guard.session() as session:
        rows = (await session.execute(select(AuditEntry).where(AuditEntry.path == path))).scalars().all()
    assert len(rows) == len(bodies) and all(r.status_code == 422 for r in rows)


async def test_nul_in_metric_fields_is_a_422(guard):
    headers = await guard.headers("operator")
    for point in (
        {"component": "etl", "metric_name": "rows", "value": 1, "labels": {"stage": "a\u0000b"}},
        {"component": "etl", "metric_name": "rows", "value": 1, "labels": {"st\u0000age": "a"}},
        {"component": "e\u0000tl", "metric_name": "rows", "value": 1},
        {"component": "etl", "metric_name": "ro\u0000ws", "value": 1},
    ):
        _assert_envelope(
            await guard.client.post("/api/v1/metrics/batch", headers=headers, json={"points": [point]}), 422
        )
        _assert_envelope(await guard.client.post("/api/v1/metrics", headers=headers, json=point), 422)
    ok = await guard.client.post(
        "/api/v1/metrics",
        headers=headers,
        json={"component": "etl", "metric_name": "rows", "value": 1, "labels": {"stage": "ab"}},
    )
    assert ok.status_code in (200, 201, 202), ok.text


def _forge(**claims) -> str:
    now = int(datetime.now(UTC).timestamp())
    payload = {
        "sub": "admin-user",
        "jti": "x" * 32,
        "iat": now,
        "exp": now + 600,
        "iss": "pipeline-guard",
        "aud": "pipeline-guard-api",
        "ver": 0,
    }
    payload.update(claims)
    return jwt.encode(payload, TEST_SECRET, algorithm="HS256")


@pytest.mark.parametrize(
    "claims",
    [
        {"ver": "abc"},
        {"ver": 1.5},
        {"ver": [1]},
        {"ver": None},
        {"ver": True},
        {"exp": 1e20},
        {"iat": 1e20},
        {"iat": -1e20},
        {"exp": "soon"},
        {"sub": 12},
        {"sub": ["admin-user"]},
        {"jti": {"a": 1}},
    ],
)
async def test_signed_tokens_with_bad_claims_are_401(guard, claims):
    await guard.headers("admin")  # the user exists
    audience = guard.runtime.settings.security.audience
    token = _forge(aud=audience, **claims)
    response = await guard.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    _assert_envelope(response, 401)


async def test_forged_helper_makes_a_valid_token(guard):
    await guard.headers("admin")
    token = _forge(aud=guard.runtime.settings.security.audience)
    assert (
        await guard.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    ).status_code == 200
