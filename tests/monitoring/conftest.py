"""Monitoring fixtures: a running guard with the scheduler installed but driven by the test
(`await scheduler.run_once()`). The HTTP/TCP targets on 127.0.0.1 come from tests/support/loopback.py."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from tests.conftest import make_settings, running_guard

FAST = {
    "interval": 5,
    "health_check_timeout": 2,
    "failure_threshold": 2,
    "success_threshold": 1,
    "flap_window": 6,
    "flap_threshold": 4,
    "recovery_grace": 30,
    "command_checks_enabled": True,
}


def mon_settings(db_url, tmp_path, monitoring: dict | None = None, **overrides):
    return make_settings(
        db_url, tmp_path, pipeline={"monitoring": {**FAST, **(monitoring or {})}}, **overrides
    )


@contextlib.asynccontextmanager
async def monitored(settings) -> AsyncIterator:
    """A running app whose scheduler the test drives; yields (guard, scheduler)."""
    from app.monitoring.declarative import sync_declared_components

    # The runtime builds the scheduler; no loop runs it: the test does.
    async with running_guard(settings, build_services=lambda rt: []) as guard:
        rt = guard.runtime
        scheduler = rt.monitoring.scheduler
        _tolerate_existing_users(guard)
        await sync_declared_components(rt.core, rt.secret_box, rt.healing.registry)
        await scheduler.open()
        try:
            yield guard, scheduler
        finally:
            await scheduler.close()


def _tolerate_existing_users(guard) -> None:
    """A second lifecycle on the same database finds the test users already there."""
    from sqlalchemy.exc import IntegrityError

    original = guard.add_user

    async def add_user(username, role, **kwargs):
        with contextlib.suppress(IntegrityError):
            await original(username, role, **kwargs)

    guard.add_user = add_user


async def add_component(guard, name: str, check: dict, **fields) -> dict:
    response = await guard.client.post(
        "/api/v1/components",
        json={"name": name, "check": check, **fields},
        headers=await guard.headers("admin"),
    )
    assert response.status_code == 201, response.text
    return response.json()


async def status_of(guard, name: str) -> dict:
    response = await guard.client.get(f"/api/v1/components/{name}", headers=await guard.headers("viewer"))
    assert response.status_code == 200, response.text
    return response.json()["state"]
