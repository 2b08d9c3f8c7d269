"""Every non-2xx response uses the envelope; a 500 never leaks exception text."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import create_async_engine

from app.db.engine import create_sessionmaker
from tests.conftest import make_settings, running_guard


def assert_envelope(response, status: int, error_type: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"type", "message", "details", "timestamp"}
    assert error["type"] == error_type
    assert isinstance(error["message"], str) and error["message"]
    datetime.fromisoformat(error["timestamp"])
    return error


async def test_envelopes_for_client_errors(guard):
    admin = await guard.headers("admin")
    c = guard.client
    malformed = await c.post(
        "/api/v1/components", headers={**admin, "content-type": "application/json"}, content=b"{not json"
    )
    assert malformed.status_code in (400, 422)
    assert_envelope(
        malformed,
        malformed.status_code,
        "bad_request" if malformed.status_code == 400 else "validation_error",
    )
    error = assert_envelope(
        await c.get("/api/v1/components", headers=admin, params={"label": "no-equals-sign"}),
        422,
        "validation_error",
    )
    assert error["details"]["fields"][0]["field"] in ("query.label", "query.label.0")
    assert_envelope(await c.get("/api/v1/components"), 401, "unauthorized")
    assert_envelope(
        await c.post("/api/v1/components", headers=await guard.headers("viewer"), json={"name": "x"}),
        403,
        "forbidden",
    )
    assert_envelope(await c.get("/api/v1/components/nope", headers=admin), 404, "not_found")
    assert_envelope(await c.get("/no/such/route"), 404, "not_found")
    await c.post("/api/v1/components", headers=admin, json={"name": "dup"})
    assert_envelope(await c.post("/api/v1/components", headers=admin, json={"name": "dup"}), 409, "conflict")
    error = assert_envelope(
        await c.post("/api/v1/components", headers=admin, json={"name": "Bad Name!", "critical": "very"}),
        422,
        "validation_error",
    )
    fields = {f["field"] for f in error["details"]["fields"]}
    assert fields == {"body.name", "body.critical"}
    assert_envelope(await c.delete("/health"), 405, "method_not_allowed")


async def test_payload_too_large(guard):
    admin = await guard.headers("admin")
    big = b"x" * (16 * 1024 * 1024 + 1)
    r = await guard.client.post(
        "/api/v1/components", headers={**admin, "content-type": "application/json"}, content=big
    )
    assert_envelope(r, 413, "payload_too_large")


async def test_check_validation_problems_are_listed(guard):
    admin = await guard.headers("admin")
    r = await guard.client.post(
        "/api/v1/components",
        headers=admin,
        json={"name": "bad-check", "check": {"kind": "smoke-signals", "interval": "-5s"}},
    )
    error = assert_envelope(r, 422, "validation_error")
    assert any(p.startswith("check.interval:") for p in error["details"]["problems"])
    assert any(p.startswith("check.kind: unknown kind 'smoke-signals'") for p in error["details"]["problems"])


async def test_rate_limited_envelope(db_url, tmp_path):
    settings = make_settings(
        db_url, tmp_path, security={"rate_limiting": {"enabled": True, "health": "2/minute"}}
    )
    async with running_guard(settings) as guard:
        for _ in range(2):
            assert (await guard.client.get("/health")).status_code == 200
        r = await guard.client.get("/health")
        assert_envelope(r, 429, "rate_limited")
        assert int(r.headers["retry-after"]) >= 1


async def test_internal_error_hides_the_exception(db_url, tmp_path, caplog):
    def add_failing_route(app):
        @app.get("/boom", include_in_schema=False)
        async def boom():
            raise RuntimeError("secret connection string postgres://user:hunter2@db")

    settings = make_settings(db_url, tmp_path)
    async with running_guard(settings, app_hook=add_failing_route) as guard:
        transport_guard = guard
        transport_guard.client._transport.raise_app_exceptions = False
        r = await guard.client.get("/boom")
        error = assert_envelope(r, 500, "internal_error")
        assert "hunter2" not in r.text and "RuntimeError" not in r.text and "Traceback" not in r.text
        assert error["details"]["error_id"]


async def test_database_unavailable_is_503_and_health_stays_up(db_url, tmp_path):
    settings = make_settings(db_url, tmp_path)
    async with running_guard(settings) as guard:
        headers = await guard.headers("admin")
        # Point the app at a database that refuses connections.
        dead = create_async_engine(
            "postgresql+asyncpg://postgres@127.0.0.1:1/none", connect_args={"timeout": 2}
        )
        real_engine, real_maker = guard.runtime.engine, guard.runtime.sessionmaker
        guard.runtime.engine, guard.runtime.sessionmaker = dead, create_sessionmaker(dead)
        try:
            r = await guard.client.get("/api/v1/components", headers=headers)
            assert_envelope(r, 503, "service_unavailable")
            assert r.headers["retry-after"] == "5"
            assert (await guard.client.get("/health")).status_code == 200
            ready = await guard.client.get("/ready")
            error = assert_envelope(ready, 503, "service_unavailable")
            assert error["details"]["checks"]["database"]["ok"] is False
        finally:
            guard.runtime.engine, guard.runtime.sessionmaker = real_engine, real_maker
            await dead.dispose()


async def test_openapi_declares_the_envelope(guard):
    spec = (await guard.client.get("/openapi.json")).json()
    responses = spec["paths"]["/api/v1/components/{name}"]["get"]["responses"]
    assert responses["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorEnvelope")


async def test_payload_too_large_without_a_declared_length(guard):
    admin = await guard.headers("admin")

    async def chunks():
        for _ in range(17):
            yield b"x" * (1024 * 1024)

    r = await guard.client.post(
        "/api/v1/components", headers={**admin, "content-type": "application/json"}, content=chunks()
    )
    assert_envelope(r, 413, "payload_too_large")
