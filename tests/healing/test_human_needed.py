"""A human is told once per incident that healing needs them, and that alert ends with the incident
(docs/LIFECYCLE.md, "escalated"). A ``notify_only`` strategy is how a policy pages a human: its
"human needed" alert is that page, so the escalation after ``max_attempts`` adds no second one; and
it resolves when the component is healthy again, whether the incident was exhausted or not.

Real scheduler (driven by the test), recorder, engine, alerts and an HTTP target on loopback
(tests/healing/test_incident_lifecycle.py)."""

from __future__ import annotations

from tests.healing.conftest import wait_until
from tests.healing.test_incident_lifecycle import lifecycle_guard


async def healing_alerts(life) -> list[dict]:
    """Healing's alerts for svc, active and resolved."""
    r = await life.guard.client.get(
        "/api/v1/alerts",
        headers=await life.guard.headers("admin"),
        params={"component": "svc", "status": "all"},
    )
    assert r.status_code == 200, r.text
    return [a for a in r.json()["items"] if a["fingerprint"].startswith("healing-")]


async def test_a_policy_that_pages_a_human_pages_once_and_the_page_ends_with_the_incident(db_url, tmp_path):
    async with lifecycle_guard(db_url, tmp_path) as life:
        await life.add(
            "svc", {"strategies": [{"kind": "notify_only"}], "max_attempts": 1, "breaker_threshold": 5}
        )
        life.svc.mode = "down"
        await life.checks(2)
        await life.heal()  # the page
        await life.heal()  # max_attempts spent: escalated
        [attempt] = await life.attempts()
        assert attempt.state == "failed" and attempt.strategy == "notify_only"
        pages = await healing_alerts(life)
        assert [(a["status"], a["severity"]) for a in pages] == [("firing", "critical")], pages
        life.svc.mode = "up"  # a human put it right
        await life.checks(1)
        pages = await healing_alerts(life)
        assert pages and all(a["status"] == "resolved" for a in pages), pages


async def test_a_page_ends_when_the_component_recovers_before_healing_gave_up(db_url, tmp_path):
    async with lifecycle_guard(db_url, tmp_path) as life:
        await life.add("svc", {"strategies": [{"kind": "notify_only"}], "max_attempts": 3})
        life.svc.mode = "down"
        await life.checks(2)
        await life.heal()  # the page; two attempts left, in back-off
        [page] = await healing_alerts(life)
        assert page["status"] == "firing", page
        life.svc.mode = "up"  # recovered by itself (or by the human who was paged)
        await life.checks(1)
        [page] = await healing_alerts(life)
        assert page["status"] == "resolved", page


async def test_a_human_who_heals_an_escalated_incident_by_hand_ends_its_escalation(db_url, tmp_path):
    async with lifecycle_guard(db_url, tmp_path) as life:
        await life.add(
            "svc",
            {
                "max_attempts": 1,
                "breaker_threshold": 5,
                "grace_period": 0,
                "backoff_initial": 0.1,
                "backoff_max": 0.1,
            },
        )
        life.svc.mode, life.svc.after_restart = "down", "down"  # the restart does not fix it
        await life.checks(2)
        await life.heal()
        await life.checks(2)  # still failing after the restart: that attempt failed
        await life.heal()  # max_attempts spent: escalated
        [escalation] = await healing_alerts(life)
        assert escalation["fingerprint"].startswith("healing-exhausted:"), escalation
        assert escalation["status"] == "firing", escalation
        life.svc.after_restart = "up"  # the human fixed what the restart needed, and heals by hand
        r = await life.guard.client.post("/api/v1/healing/svc", headers=await life.guard.headers("admin"))
        assert r.status_code == 202, r.text
        manual = r.json()["id"]
        await wait_until(lambda: life._acted(manual), timeout=30)
        await life.checks(1)
        assert (await life.attempt(manual)).state == "succeeded"
        [escalation] = await healing_alerts(life)
        assert escalation["status"] == "resolved", escalation
