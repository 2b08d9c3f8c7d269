"""Liveness, readiness and the Prometheus exposition."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import pytest


async def test_health_body(guard):
    r = await guard.client.get("/health")
    body = r.json()
    assert r.status_code == 200
    assert set(body) == {"status", "timestamp", "components"}
    assert body["components"] == {}


async def test_health_reflects_critical_components(guard):
    guard.state.component_health.update({"db": "failed", "cache": "degraded"})
    assert (await guard.client.get("/health")).json()["status"] == "degraded"
    guard.state.critical_components.add("db")
    body = (await guard.client.get("/health")).json()
    assert body["status"] == "critical" and body["components"] == {"db": "failed", "cache": "degraded"}


async def test_ready(guard):
    r = await guard.client.get("/ready")
    assert r.status_code == 200
    assert r.json()["checks"]["database"]["ok"] and r.json()["checks"]["schema"]["ok"]


async def test_ready_fails_when_a_background_service_stopped(db_url, tmp_path):
    from app.background import LoopService
    from tests.conftest import make_settings, running_guard

    class Once(LoopService):
        name = "once"

        async def run_once(self):
            return None

    holder = {}

    def build(state):
        holder["svc"] = Once(0.01)
        return [holder["svc"]]

    async with running_guard(make_settings(db_url, tmp_path), build_services=build) as guard:
        assert (await guard.client.get("/ready")).status_code == 200
        await holder["svc"].stop()
        r = await guard.client.get("/ready")
        assert r.status_code == 503
        assert r.json()["error"]["details"]["checks"]["background"]["stopped"] == ["once"]


async def test_metrics_exposition_is_promtool_clean(guard, tmp_path):
    await guard.client.get("/health")
    await guard.client.get("/api/v1/components")
    r = await guard.client.get("/metrics")
    assert r.status_code == 200
    text = r.text
    assert "pipeline_guard_up 1.0" in text
    assert 'http_requests_total{handler="/health",method="GET",status="2xx"}' in text
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not installed (apt-get install prometheus); CI installs it")
    # In a thread, so the event loop (and the guard on it) keeps running meanwhile.
    result = await asyncio.to_thread(subprocess.run, [promtool, "check", "metrics"], input=text, check=False,
                                     capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
