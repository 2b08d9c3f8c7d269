"""Healing outcome counters start at 0 for every strategy a component's policy lists, so Prometheus'
``increase()`` sees the first attempt (a series that first appears at 1 has no increase)."""

from __future__ import annotations

from app.healing.loop import prime_outcome_counters


async def test_a_new_policy_shows_its_outcomes_at_zero_before_any_attempt(guard):
    headers = await guard.headers("admin")
    response = await guard.client.post(
        "/api/v1/components",
        headers=headers,
        json={"name": "w", "recovery": {"strategies": [{"kind": "restart", "argv": ["true"]}]}},
    )
    assert response.status_code == 201, response.text
    metrics = (await guard.client.get("/metrics")).text
    for strategy in ("restart",):
        for outcome in ("succeeded", "failed"):
            assert (
                f'healing_attempts_total{{component="w",outcome="{outcome}",strategy="{strategy}"}} 0.0'
                in metrics
            )
            assert (
                f'pipeline_guard_healing_attempts_total{{component="w",outcome="{outcome}",'
                f'strategy="{strategy}"}} 0.0'
            ) in metrics
    response = await guard.client.patch(
        "/api/v1/components/w", headers=headers, json={"recovery": {"strategies": [{"kind": "notify_only"}]}}
    )
    assert response.status_code == 200, response.text
    assert 'outcome="failed",strategy="notify_only"} 0.0' in (await guard.client.get("/metrics")).text


async def test_components_known_at_start_are_primed(guard):
    headers = await guard.headers("admin")
    await guard.client.post(
        "/api/v1/components",
        headers=headers,
        json={"name": "old", "recovery": {"strategies": [{"kind": "notify_only"}]}},
    )
    guard.runtime.metrics._primed_healing.clear()  # as a fresh process would be
    for collector in (guard.runtime.metrics.healing_attempts, guard.runtime.metrics.guard_healing_attempts):
        collector.clear()
    await prime_outcome_counters(guard.runtime.core)
    assert (
        'healing_attempts_total{component="old",outcome="succeeded",strategy="notify_only"} 0.0'
        in (await guard.client.get("/metrics")).text
    )
