"""Detection rules: threshold ``for`` semantics (points and timer), trend on a ramp vs noise,
anomaly detector state surviving a restart, events published with the anomaly row."""

from __future__ import annotations

import random
from datetime import timedelta

from sqlalchemy import select

from app.db.models import MetricAnomaly, RuleState
from app.platform.events import AnomalyCleared, AnomalyDetected
from tests.conftest import running_guard
from tests.metrics.conftest import point, series


def collect_events(guard) -> list:
    seen: list = []

    async def handler(event, session):
        seen.append(event)

    guard.runtime.events.subscribe(AnomalyDetected, handler)
    guard.runtime.events.subscribe(AnomalyCleared, handler)
    return seen


async def add_rule(guard, kind, params, **extra) -> dict:
    body = {
        "name": f"{kind}-rule",
        "component": "etl",
        "metric_name": "rows_processed",
        "kind": kind,
        "params": params,
        "severity": "critical",
        **extra,
    }
    r = await guard.client.post("/api/v1/rules", json=body, headers=await guard.headers("admin"))
    assert r.status_code == 201, r.text
    return r.json()


async def send(guard, points):
    r = await guard.client.post("/api/v1/metrics/batch", json=points, headers=await guard.headers("ingest"))
    assert r.status_code == 201, r.text


async def anomalies(guard):
    async with guard.session() as s:
        return list((await s.execute(select(MetricAnomaly).order_by(MetricAnomaly.id))).scalars())


async def test_rules_crud_and_validation(guard):
    h = await guard.headers("admin")
    r = await guard.client.post(
        "/api/v1/rules",
        json={"name": "x", "component": "etl", "metric_name": "m", "kind": "threshold", "params": {}},
        headers=h,
    )
    assert r.status_code == 422
    assert {f["field"] for f in r.json()["error"]["details"]["fields"]} == {"params.operator", "params.value"}
    rule = await add_rule(guard, "threshold", {"operator": "gt", "value": 10})
    r = await guard.client.patch(f"/api/v1/rules/{rule['id']}", json={"severity": "info"}, headers=h)
    assert r.json()["severity"] == "info" and r.json()["version"] == 2
    r = await guard.client.post(
        "/api/v1/rules",
        json={"name": "y", "component": "etl", "metric_name": "m", "kind": "anomaly"},
        headers=await guard.headers("operator"),
    )
    assert r.status_code == 403
    assert (await guard.client.delete(f"/api/v1/rules/{rule['id']}", headers=h)).status_code == 204
    assert (await guard.client.get("/api/v1/rules", headers=h)).json() == []


async def test_threshold_for_semantics(guard, now):
    events = collect_events(guard)
    evaluator = guard.runtime.detection.evaluator
    await add_rule(guard, "threshold", {"operator": "gt", "value": 10, "for_seconds": 60})
    t0 = now - timedelta(seconds=10)  # (the timer judges "for" on the wall clock: keep the clocks near now)
    # held for 50 s, then broken by a dip, then held again for 59 s: never fires
    await send(
        guard,
        [
            point(value=v, ts=t0 + timedelta(seconds=s))
            for s, v in [(0, 20), (50, 20), (55, 5), (60, 20), (119, 20)]
        ],
    )
    await evaluator.run_once()
    assert events == [] and await anomalies(guard) == []
    # the 60th second of holding fires, exactly once
    await send(
        guard,
        [point(value=20, ts=t0 + timedelta(seconds=120)), point(value=30, ts=t0 + timedelta(seconds=130))],
    )
    await evaluator.run_once()
    assert [type(e) for e in events] == [AnomalyDetected]
    assert events[0].evidence["held_seconds"] == 60 and events[0].severity == "critical"
    [row] = await anomalies(guard)
    assert row.cleared_at is None and row.evidence["value"] == 20
    # dropping below clears it
    await send(guard, [point(value=3, ts=t0 + timedelta(seconds=140))])
    await evaluator.run_once()
    assert [type(e) for e in events] == [AnomalyDetected, AnomalyCleared]
    [row] = await anomalies(guard)
    assert row.cleared_at is not None


async def test_threshold_for_fires_on_timer_without_new_points(guard, now):
    events = collect_events(guard)
    evaluator = guard.runtime.detection.evaluator
    await add_rule(guard, "threshold", {"operator": "ge", "value": 10, "for_seconds": 60})
    await send(guard, [point(value=12, ts=now - timedelta(seconds=30))])
    await evaluator.run_once()
    assert events == []
    await send(guard, [point(value=12, ts=now - timedelta(seconds=90))])  # out of order: ignored
    await evaluator.run_once()
    assert events == []
    evaluator._states[next(iter(evaluator._states))].evaluator.since -= 40  # as if 40 s had passed
    await evaluator.run_once()
    assert len(events) == 1 and events[0].evidence["by_timer"] is True


async def test_running_for_clock_survives_restart(settings, now):
    async with running_guard(settings) as guard:
        evaluator = guard.runtime.detection.evaluator
        await add_rule(guard, "threshold", {"operator": "gt", "value": 10, "for_seconds": 60})
        await send(guard, [point(value=50, ts=now - timedelta(seconds=100))])

        async def no_timers(session):  # the process stops before its timer would have fired
            return None

        evaluator._timers = no_timers
        await evaluator.run_once(final=True)
        assert await anomalies(guard) == []
    # no more points after the restart: the timer alone fires the rule from the persisted clock
    async with running_guard(settings) as guard:
        events = collect_events(guard)
        await guard.runtime.detection.evaluator.run_once()
        assert len(events) == 1 and events[0].evidence["by_timer"] is True


async def test_trend_fires_on_ramp_not_on_noise(guard, now):
    events = collect_events(guard)
    evaluator = guard.runtime.detection.evaluator
    await add_rule(guard, "trend", {"value": 100, "horizon_seconds": 3600, "window_seconds": 3600})
    rng = random.Random(3)
    start = now - timedelta(seconds=6000)
    noise = [50 + rng.gauss(0, 5) for _ in range(600)]
    await send(guard, series(start, noise, step=10, labels={"disk": "noise"}))
    await evaluator.run_once()
    assert events == []
    ramp = [20 + 0.01 * i * 10 + rng.gauss(0, 1) for i in range(600)]  # 80 at the end, +36/h: full in ~0.55 h
    await send(guard, series(start, ramp, step=10, labels={"disk": "ramp"}))
    await evaluator.run_once()
    assert [e.labels for e in events] == [{"disk": "ramp"}]
    ev = events[0].evidence
    assert 0 < ev["seconds_to_cross"] < 3600 and "predicted to reach 100" in events[0].message


async def test_detector_state_survives_restart(settings, now):
    rng = random.Random(5)
    start = now - timedelta(seconds=250)
    normal = [100 + rng.gauss(0, 1) for _ in range(200)]
    async with running_guard(settings) as guard:
        evaluator = guard.runtime.detection.evaluator
        rule = await add_rule(guard, "anomaly", {"sensitivity": 0.5})
        await send(guard, series(start, normal))
        await evaluator.run_once()
        await evaluator.on_stop()  # the shutdown flush
        async with guard.session() as s:
            [state] = list((await s.execute(select(RuleState))).scalars())
        assert state.state["eval"]["count"] == 200
        tokens = dict(guard._tokens)
    async with running_guard(settings) as guard:  # a new process: nothing in memory
        guard._tokens = tokens  # same users and secret: the tokens are still good
        events = collect_events(guard)
        evaluator = guard.runtime.detection.evaluator
        await send(guard, [point(value=160, ts=start + timedelta(seconds=210))])
        await evaluator.run_once()
        # a fresh detector would still be warming up (no firing before 64 points): this one remembers
        assert [type(e) for e in events] == [AnomalyDetected]
        assert events[0].rule_id == rule["id"] and events[0].evidence["score"] >= 0.5
        r = await guard.client.get("/api/v1/metrics/baselines", headers=await guard.headers("viewer"))
        [b] = r.json()
        assert b["baseline"]["count"] == 201 and abs(b["baseline"]["median"] - 100) < 1 and b["firing"]
