"""``absent`` rules: fire on the clock when no point arrived for ``for``, resolve when one arrives."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from sqlalchemy import select

from app.db.models import MetricAnomaly
from tests.conftest import running_guard

DEADLINE_S = 60.0


def point(value=1.0, labels=None):
    return {
        "component": "etl",
        "metric_name": "rows_loaded",
        "value": value,
        "labels": labels or {},
        "timestamp": datetime.now(UTC).isoformat(),
    }


async def send(guard, points):
    r = await guard.client.post("/api/v1/metrics/batch", json=points, headers=await guard.headers("ingest"))
    assert r.status_code == 201, r.text


async def active(guard):
    async with guard.session() as s:
        return list(
            (await s.execute(select(MetricAnomaly).where(MetricAnomaly.cleared_at.is_(None)))).scalars()
        )


async def alerts(guard, status):
    r = await guard.client.get(
        "/api/v1/alerts", params={"status": status}, headers=await guard.headers("operator")
    )
    assert r.status_code == 200, r.text
    body = r.json()
    return body["items"] if isinstance(body, dict) else body


async def tick_until(evaluator, condition):
    deadline = time.monotonic() + DEADLINE_S
    while True:
        await evaluator.run_once()
        if await condition():
            return
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.2)


async def test_absent_fires_on_the_clock_and_resolves_on_arrival(settings):
    async with running_guard(settings, build_services=lambda rt: []) as guard:
        h = await guard.headers("admin")
        bad = await guard.client.post(
            "/api/v1/rules",
            headers=h,
            json={"name": "no-for", "component": "etl", "metric_name": "rows_loaded", "kind": "absent"},
        )
        assert bad.status_code == 422 and "params.for" in bad.text
        r = await guard.client.post(
            "/api/v1/rules",
            headers=h,
            json={
                "name": "etl-fresh",
                "component": "etl",
                "metric_name": "rows_loaded",
                "kind": "absent",
                "labels": {"table": "sales"},
                "params": {"for": "6s"},
                "severity": "critical",
            },
        )
        assert r.status_code == 201, r.text
        assert r.json()["params"]["for_seconds"] == 6.0

        evaluator = guard.runtime.detection.evaluator
        await send(guard, [point(labels={"table": "sales"})])
        await evaluator.run_once()
        assert await active(guard) == []

        # points of another series (labels the rule does not match) do not keep it quiet
        async def fired():
            await send(guard, [point(labels={"table": "other"})])
            return bool(await active(guard))

        await tick_until(evaluator, fired)
        [anomaly] = await active(guard)
        assert anomaly.kind == "absent" and "no rows_loaded point from etl" in anomaly.message
        assert anomaly.evidence["for_seconds"] == 6.0 and anomaly.evidence["last_point_at"]
        [alert] = await alerts(guard, "firing")
        assert alert["component"] == "etl" and alert["severity"] == "critical"

        # a restarted evaluator reloads the firing instead of firing again
        evaluator = guard.runtime.detection.evaluator
        await evaluator.run_once()
        async with guard.session() as s:
            assert len(list((await s.execute(select(MetricAnomaly))).scalars())) == 1

        await send(guard, [point(labels={"table": "sales"})])
        await evaluator.run_once()
        assert await active(guard) == []
        assert await alerts(guard, "firing") == []


async def test_absent_counts_points_written_elsewhere_and_never_seen_series(settings):
    """A point stored by another replica (not offered to this evaluator) clears it; a rule whose
    series never had a point fires ``for`` after its creation."""
    async with running_guard(settings) as guard:
        h = await guard.headers("admin")
        for name, metric in (("quiet", "never_sent"), ("elsewhere", "rows_loaded")):
            r = await guard.client.post(
                "/api/v1/rules",
                headers=h,
                json={
                    "name": name,
                    "component": "etl",
                    "metric_name": metric,
                    "kind": "absent",
                    "params": {"for": 1},
                },
            )
            assert r.status_code == 201, r.text
        evaluator = guard.runtime.detection.evaluator

        async def both_fired():
            return len(await active(guard)) == 2

        await tick_until(evaluator, both_fired)
        # stored through the service with no evaluator attached: only metric_series knows
        from app.db.session import session_scope
        from app.metrics.service import MetricsService

        rt = guard.runtime
        async with session_scope(rt.sessionmaker) as session:
            await MetricsService(session, rt.core, cache=rt.detection.cache, evaluator=None).record([point()])
        await evaluator.run_once()
        assert [a.metric_name for a in await active(guard)] == ["never_sent"]


async def test_rules_declared_in_the_config_file(db_url, tmp_path):
    from app.config.loading import load_settings, validate_config_file
    from app.detection.declarative import sync_declared_rules
    from tests.conftest import TEST_SECRET

    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {name: r, component: etl, metric_name: rows, kind: absent}\n")
    [problem] = validate_config_file(bad, environ={})
    assert problem.startswith("rules.0") and "params.for" in problem

    path = tmp_path / "guard.yaml"
    path.write_text(
        f"env: test\ndatabase_url: {db_url}\ndata_dir: {tmp_path / 'var'}\n"
        f"security:\n  secret_key: {TEST_SECRET}\n  rate_limiting: {{enabled: false}}\n"
        "rules:\n  - name: sales-fresh\n    component: etl\n    metric_name: rows_loaded\n"
        "    kind: absent\n    labels: {table: sales}\n    params: {for: 2h}\n    severity: critical\n"
    )
    settings = load_settings(path, environ={})
    async with running_guard(settings, build_services=lambda rt: [rt.detection.evaluator]) as guard:
        h = await guard.headers("admin")
        [rule] = (await guard.client.get("/api/v1/rules", headers=h)).json()
        assert (rule["name"], rule["kind"], rule["source"], rule["params"]["for_seconds"]) == (
            "sales-fresh",
            "absent",
            "config",
            7200.0,
        )
        r = await guard.client.patch(f"/api/v1/rules/{rule['id']}", json={"severity": "info"}, headers=h)
        assert r.status_code == 409 and r.json()["error"]["details"]["source"] == "config"
        assert (await guard.client.delete(f"/api/v1/rules/{rule['id']}", headers=h)).status_code == 409

        guard.runtime.settings.rules = []
        assert await sync_declared_rules(guard.runtime.core, guard.runtime.detection.evaluator) == {
            "created": [],
            "updated": [],
            "disabled": ["sales-fresh"],
        }
        [rule] = (await guard.client.get("/api/v1/rules", headers=h)).json()
        assert rule["enabled"] is False


async def test_two_replicas_ticking_one_absent_rule_record_one_episode(settings):
    """Every replica's evaluator ticks ``absent`` rules on its clock: the firing is recorded once
    (one anomaly, one alert), the other replica adopts it, and the clearing is recorded once too."""
    from app.detection.evaluator import RuleEvaluator

    async with running_guard(settings, build_services=lambda rt: []) as guard:
        r = await guard.client.post(
            "/api/v1/rules",
            headers=await guard.headers("admin"),
            json={
                "name": "etl-fresh",
                "component": "etl",
                "metric_name": "rows_loaded",
                "kind": "absent",
                "params": {"for": "5s"},
            },
        )
        assert r.status_code == 201, r.text
        one = guard.runtime.detection.evaluator
        other = RuleEvaluator(guard.runtime.core)  # a second replica's evaluator on the same database
        await one.run_once()
        await other.run_once()  # both hold the rule's (quiet) state in memory now

        async def fired():
            await asyncio.gather(one.run_once(), other.run_once())
            return bool(await active(guard))

        await tick_until(one, fired)
        for _ in range(3):
            await asyncio.gather(one.run_once(), other.run_once())
        async with guard.session() as s:
            episodes = list((await s.execute(select(MetricAnomaly))).scalars())
        assert len(episodes) == 1, [(a.id, a.started_at) for a in episodes]
        assert len(await alerts(guard, "firing")) == 1

        await send(guard, [point()])
        await asyncio.gather(one.run_once(), other.run_once())
        await asyncio.gather(one.run_once(), other.run_once())
        assert await active(guard) == []
        async with guard.session() as s:
            assert len(list((await s.execute(select(MetricAnomaly))).scalars())) == 1
        assert await alerts(guard, "firing") == []
