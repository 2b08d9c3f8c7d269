"""Liveness, readiness and the Prometheus exposition."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import pytest


async def test_health_body(guard):
    r = await guard.client.get("/health")
    body = r.json()
    assert r.status_code == 200
    assert set(body) == {"status", "timestamp", "components", "unlisted"}
    assert body["components"] == {}


async def test_health_reflects_critical_components(guard):
    guard.runtime.component_health.update({"db": "failed", "cache": "degraded"})
    assert (await guard.client.get("/health")).json()["status"] == "degraded"
    guard.runtime.critical_components.add("db")
    body = (await guard.client.get("/health")).json()
    assert body["status"] == "critical" and body["components"] == {"db": "failed", "cache": "degraded"}


async def test_ready(guard):
    r = await guard.client.get("/ready")
    assert r.status_code == 200
    assert r.json()["checks"]["database"]["ok"] and r.json()["checks"]["schema"]["ok"]


async def test_ready_fails_when_a_background_service_stopped(db_url, tmp_path):
    from app.platform.loops import LoopService
    from tests.conftest import make_settings, running_guard

    class Once(LoopService):
        name = "once"

        async def run_once(self):
            return None

    holder = {}

    def build(rt):
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
    result = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=text,
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr


async def test_health_lists_only_the_components_that_are_not_healthy(guard):
    health = guard.runtime.component_health
    health.update({f"ok-{i:03d}": "healthy" for i in range(500)})
    health.update({"new": "unknown", "slow": "degraded", "db": "critical"})
    guard.runtime.critical_components.add("db")
    body = (await guard.client.get("/health")).json()
    assert body["status"] == "critical"
    assert body["components"] == {"db": "critical", "slow": "degraded"}
    full = (await guard.client.get("/health", params={"full": "true"})).json()
    assert len(full["components"]) == 503 and full["components"]["ok-007"] == "healthy"
    assert full["components"]["new"] == "unknown" and full["status"] == "critical"
    health["db"] = "healthy"
    health.pop("slow")
    body = (await guard.client.get("/health")).json()
    assert body["status"] == "healthy" and body["components"] == {}
    r = await guard.client.get("/health", params={"full": "maybe"})
    assert r.status_code == 422 and r.json()["error"]["type"] == "validation_error"


async def test_plain_health_answered_at_the_edge_is_the_routes_answer(guard):
    """A plain GET /health is answered by the edge; with a query string it goes through the route.
    Same status, headers, body bytes (but the timestamp), request id and metrics; other methods
    still get the route table's answer."""
    health = guard.runtime.component_health
    health.update({"ok": "healthy", "new": "unknown", "slow": "degraded", "db": "critical"})
    guard.runtime.critical_components.add("db")
    plain = await guard.client.get("/health")
    routed = await guard.client.get("/health", params={"full": "false"})
    stamp = re.compile(rb'"timestamp":"([^"]+)"')
    for r in (plain, routed):
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        assert int(r.headers["content-length"]) == len(r.content)
        assert r.headers["x-request-id"]
        when = datetime.fromisoformat(stamp.search(r.content).group(1).decode())
        assert when.utcoffset() == timedelta(0) and abs(datetime.now(UTC) - when) < timedelta(minutes=1)
    assert stamp.search(plain.content).group(1).endswith(b"Z")
    assert stamp.sub(b"", plain.content) == stamp.sub(b"", routed.content)
    assert plain.json()["components"] == {"db": "critical", "slow": "degraded"}
    assert plain.headers["x-request-id"] != routed.headers["x-request-id"]
    registry = guard.runtime.metrics.registry
    labels = {"handler": "/health", "method": "GET", "status": "2xx"}
    assert registry.get_sample_value("http_requests_total", labels) == 2
    assert registry.get_sample_value("http_response_size_bytes_count", {"handler": "/health"}) == 2
    assert (await guard.client.head("/health")).status_code == 405
    assert (await guard.client.post("/health")).status_code == 405


async def test_health_body_names_a_few_worst_components_at_any_fleet_size(guard):
    from app.health.router import HEALTH_LISTED

    health = guard.runtime.component_health
    health.update({f"ok-{i:05d}": "healthy" for i in range(5000)})
    health.update({f"slow-{i:04d}": "degraded" for i in range(300)})
    health.update({f"down-{i:04d}": "failed" for i in range(100)})
    health.update({"core-db": "critical", "a-cache": "recovering"})
    guard.runtime.critical_components.add("core-db")
    r = await guard.client.get("/health")
    body = r.json()
    assert body["status"] == "critical" and len(r.content) < 400
    assert list(body["components"]) == ["core-db", "down-0000", "down-0001", "down-0002", "down-0003"]
    assert len(body["components"]) == HEALTH_LISTED and body["unlisted"] == 402 - HEALTH_LISTED
    full = (await guard.client.get("/health", params={"full": "1"})).json()
    assert len(full["components"]) == 5402 and full["unlisted"] == 0


def test_health_map_keeps_its_index_with_every_dict_method():
    from collections import Counter

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from app.health.health_map import OK_STATUSES, HealthMap, most_severe, overall_health

    names = st.sampled_from(["a", "b", "c", "d", "e", "f"])
    statuses = st.sampled_from(
        ["healthy", "unknown", "degraded", "critical", "failed", "recovering", "paused", "odd"]
    )
    ops = st.lists(
        st.one_of(
            st.tuples(st.just("set"), names, statuses),
            st.tuples(st.just("pop"), names, statuses),
            st.tuples(st.just("del"), names, statuses),
            st.tuples(st.just("update"), names, statuses),
            st.tuples(st.just("setdefault"), names, statuses),
            st.tuples(st.just("clear"), names, statuses),
            st.tuples(st.just("popitem"), names, statuses),
        ),
        max_size=30,
    )

    @settings(max_examples=500, deadline=None)
    @given(ops, st.sets(names))
    def check(operations, critical):
        m, plain = HealthMap(), {}
        for op, name, status in operations:
            if op == "set":
                m[name] = plain[name] = status
            elif op == "pop":
                assert m.pop(name, None) == plain.pop(name, None)
            elif op == "del" and name in plain:
                del m[name], plain[name]
            elif op == "update":
                m.update({name: status})
                plain.update({name: status})
            elif op == "setdefault":
                assert m.setdefault(name, status) == plain.setdefault(name, status)
            elif op == "clear":
                m.clear()
                plain.clear()
            elif op == "popitem" and plain:
                name, _ = m.popitem()
                plain.pop(name)
            assert dict(m) == plain
            assert m.not_ok == {n for n, s in plain.items() if s not in OK_STATUSES}
            assert +m.counts == Counter(plain.values())
            assert overall_health(m, critical) == overall_health(dict(plain), critical)
            by_status: dict[str, set[str]] = {}
            for n, s in plain.items():
                if s not in OK_STATUSES:
                    by_status.setdefault(s, set()).add(n)
            assert m.not_ok_by_status == by_status
            for limit in (0, 1, 2, 3, 6):
                # The HealthMap's set operations choose as the reference ranking over a plain dict.
                chosen, unlisted = most_severe(m, critical, limit)
                expected, expected_unlisted = most_severe(dict(plain), critical, limit)
                assert list(chosen.items()) == list(expected.items()) and unlisted == expected_unlisted

    check()


async def test_http_metrics_label_requests_by_route_template(guard):
    admin = await guard.headers("admin")
    for name in ("a", "b"):
        await guard.client.get(f"/api/v1/components/{name}", headers=admin)  # 404s, one template
    await guard.client.get("/no/such/path")
    await guard.client.post(
        "/api/v1/components", headers={**admin, "content-type": "application/json"}, content=b"{}"
    )
    await guard.client.get("/metrics")
    text = (await guard.client.get("/metrics")).text
    assert 'http_requests_total{handler="/api/v1/components/{name}",method="GET",status="4xx"} 2.0' in text
    assert 'http_requests_total{handler="none",method="GET",status="4xx"} 1.0' in text
    assert 'http_requests_total{handler="/api/v1/components",method="POST",status="4xx"} 1.0' in text
    assert 'handler="/metrics"' not in text
    assert (
        'http_request_duration_seconds_bucket{handler="/api/v1/components/{name}",le="0.1",method="GET"}'
        in text
    )
    assert "http_request_duration_highr_seconds_count" in text
    assert 'http_request_size_bytes_sum{handler="/api/v1/components"} 2.0' in text
