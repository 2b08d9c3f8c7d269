"""Whole incident lives through the real code: the scheduler (driven by the test), the recorder, the
healing engine, the alerts subscribers and a real HTTP target on 127.0.0.1 whose ``/restart`` the
``webhook`` strategy calls. Each test is one rule of app/healing/lifecycle.py (docs/LIFECYCLE.md)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from aiohttp import web
from sqlalchemy import select

from app.db.models import ComponentState, HealthTransitionRecord, Incident
from app.db.models.healing import HealingAttempt, HealingBudget
from tests.alerts.conftest import AM_TOKEN
from tests.healing.conftest import wait_until
from tests.monitoring.conftest import mon_settings, monitored
from tests.support.loopback import serve_app

SLOW_S = 0.6


@dataclass
class Service:
    """A target that answers ``/health`` per ``mode`` (up, down, slow, flap) and takes ``/restart``."""

    port: int = 0
    mode: str = "up"
    after_restart: str = "up"
    restarts: int = 0
    calls: int = 0  # /restart requests received (restarts counts the finished ones)
    served: int = 0
    seen: list[str] = field(default_factory=list)
    hold: asyncio.Event | None = None  # set: /restart waits for it (an action that takes a while)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def service_app(svc: Service) -> web.Application:
    async def health(request: web.Request) -> web.Response:
        svc.served += 1
        mode = svc.mode
        if mode == "flap":
            mode = "up" if svc.served % 2 else "down"
        svc.seen.append(mode)
        if mode == "slow":
            await asyncio.sleep(SLOW_S)
        return web.Response(status=503 if mode == "down" else 200, text=mode)

    async def restart(request: web.Request) -> web.Response:
        svc.calls += 1
        if svc.hold is not None:
            await svc.hold.wait()
        svc.restarts += 1
        svc.mode = svc.after_restart
        svc.served = 0
        return web.Response(text="restarted")

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_post("/restart", restart)
    return app


@contextlib.asynccontextmanager
async def lifecycle_guard(db_url, tmp_path, **monitoring):

    svc = Service()
    settings = mon_settings(
        db_url,
        tmp_path,
        monitoring={
            "failure_threshold": 2,
            "success_threshold": 1,
            "flap_window": 6,
            "flap_threshold": 4,
            **monitoring,
        },
        healing={"max_concurrent": 3, "max_concurrent_per_group": 2},
        security={"ssrf_allowlist": ["127.0.0.1/32"], "alertmanager_token": AM_TOKEN},
    )
    async with serve_app(service_app(svc)) as port, monitored(settings) as (guard, scheduler):
        svc.port = port
        engine = guard.runtime.healing.engine
        yield Life(guard, scheduler, engine, svc)
        await engine.stop()


class Life:
    def __init__(self, guard, scheduler, engine, svc: Service) -> None:
        self.guard, self.scheduler, self.engine, self.svc = guard, scheduler, engine, svc

    async def add(self, name: str, recovery: dict | None = None, *, check: dict | None = None) -> dict:
        recovery = {"strategies": [{"kind": "webhook", "url": self.svc.url("/restart")}], **(recovery or {})}
        check = check or {
            "kind": "http",
            "url": self.svc.url("/health"),
            "timeout": 3,
            "degraded_after_ms": int(SLOW_S * 1000 / 2),
        }
        r = await self.guard.client.post(
            "/api/v1/components",
            headers=await self.guard.headers("admin"),
            json={"name": name, "check": check, "recovery": recovery},
        )
        assert r.status_code == 201, r.text
        return r.json()

    async def checks(self, n: int = 1) -> None:
        for _ in range(n):
            await self.scheduler.run_once()

    async def heal(self) -> list[int]:
        """One decision pass; waits until every attempt it started has finished acting."""
        started = await self.engine.evaluate()
        for attempt_id in started:
            await wait_until(lambda a=attempt_id: self._acted(a), timeout=30)
        return started

    async def _acted(self, attempt_id: int) -> bool:
        row = await self.attempt(attempt_id)
        return row.state != "running"

    async def attempt(self, attempt_id: int) -> HealingAttempt:
        async with self.guard.session() as session:
            return await session.get(HealingAttempt, attempt_id)

    async def attempts(self) -> list[HealingAttempt]:
        async with self.guard.session() as session:
            return list((await session.execute(select(HealingAttempt).order_by(HealingAttempt.id))).scalars())

    async def state(self, component_id: int) -> ComponentState:
        async with self.guard.session() as session:
            return await session.get(ComponentState, component_id)

    async def transitions(self, component_id: int) -> list[HealthTransitionRecord]:
        async with self.guard.session() as session:
            return list(
                (
                    await session.execute(
                        select(HealthTransitionRecord)
                        .where(HealthTransitionRecord.component_id == component_id)
                        .order_by(HealthTransitionRecord.id)
                    )
                ).scalars()
            )

    async def incidents(self, component_id: int) -> list[Incident]:
        async with self.guard.session() as session:
            return list(
                (
                    await session.execute(
                        select(Incident).where(Incident.component_id == component_id).order_by(Incident.id)
                    )
                ).scalars()
            )

    async def alerts(self, component: str) -> list[dict]:
        r = await self.guard.client.get(
            "/api/v1/alerts", headers=await self.guard.headers("admin"), params={"component": component}
        )
        assert r.status_code == 200, r.text
        return r.json()["items"]

    async def status(self, component_id: int) -> str:
        return (await self.state(component_id)).status


async def _outage_healed(life: Life, component: dict, *, checks_down: int = 2) -> HealingAttempt:
    """down -> critical -> one restart (the target comes back per ``after_restart``) -> verifying."""
    life.svc.mode = "down"
    await life.checks(checks_down)
    assert await life.status(component["id"]) == "critical"
    [attempt_id] = await life.heal()
    attempt = await life.attempt(attempt_id)
    assert attempt.state == "verifying", attempt.detail
    return attempt


async def test_the_grace_is_the_policys_grace_period(db_url, tmp_path):
    async with lifecycle_guard(db_url, tmp_path, recovery_grace=30) as life:
        component = await life.add("svc", {"grace_period": "7s"})
        await _outage_healed(life, component)

        async def recovering_transitions():
            return [t for t in await life.transitions(component["id"]) if t.current == "recovering"]

        # Monitoring notes the action after healing committed `verifying`: wait for that write.
        recovering = await wait_until(recovering_transitions, timeout=30)
        assert len(recovering) == 1 and "grace 7s" in recovering[0].reason, recovering[0].reason
        state = await life.state(component["id"])
        assert (state.grace_until - state.status_since).total_seconds() == 7


async def test_after_a_verified_heal_a_new_failure_is_seen_within_one_threshold(db_url, tmp_path):
    async with lifecycle_guard(db_url, tmp_path) as life:
        component = await life.add("svc", {"grace_period": "5m"})
        attempt = await _outage_healed(life, component)
        await life.checks(1)  # the restarted target answers: verified
        assert await life.status(component["id"]) == "healthy"
        healed = await life.attempt(attempt.id)
        assert healed.state == "succeeded" and "holds_until" in healed.decision
        assert (await life.state(component["id"])).grace_until is None  # the grace ended with the start-up
        life.svc.mode = "down"
        await life.checks(2)  # failure_threshold
        assert await life.status(component["id"]) == "critical"
        assert len(await life.incidents(component["id"])) == 2


async def test_failures_before_the_heal_never_feed_the_flap_window(db_url, tmp_path):
    async with lifecycle_guard(db_url, tmp_path) as life:
        component = await life.add("svc", {"grace_period": 0})
        life.svc.mode = "down"
        await life.checks(3)  # a long outage...
        life.svc.hold = asyncio.Event()
        [attempt_id] = await life.engine.evaluate()
        await wait_until(lambda: life.svc.calls == 1, timeout=30)  # the restart is under way
        await life.checks(3)  # ...that goes on while the action runs: 6 of the last 6 failed
        life.svc.hold.set()
        await wait_until(lambda: life._acted(attempt_id), timeout=30)
        assert (await life.attempt(attempt_id)).state == "verifying"
        await life.checks(6)
        assert await life.status(component["id"]) == "healthy"
        assert [t.current for t in await life.transitions(component["id"])] == [
            "critical",
            "recovering",
            "healthy",
        ]
        assert len(await life.incidents(component["id"])) == 1
        assert await life.heal() == [] and life.svc.restarts == 1
        assert [a.state for a in await life.attempts()] == ["succeeded"]


async def test_a_heal_that_keeps_flapping_is_a_failed_heal_and_people_are_told(db_url, tmp_path):
    async with lifecycle_guard(db_url, tmp_path, flap_threshold=3) as life:
        life.svc.after_restart = "flap"
        component = await life.add("svc", {"grace_period": 0, "breaker_threshold": 1, "verify_timeout": "5m"})
        attempt = await _outage_healed(life, component)
        await life.checks(12)  # up, down, up, down...: flapping within the stick window
        incidents = await life.incidents(component["id"])
        assert len(incidents) == 2, [t.reason for t in await life.transitions(component["id"])]
        attempt = await life.attempt(attempt.id)
        assert attempt.state == "failed" and "relapsed" in attempt.detail, attempt.detail
        async with life.guard.session() as session:
            budget = await session.get(HealingBudget, "svc")
            assert budget.breaker_open and budget.backoff_level == 1
        titles = [a["metadata"].get("title") for a in await life.alerts("svc") if a["status"] == "firing"]
        assert "healing exhausted: human needed" in titles
        assert await life.heal() == [] and life.svc.restarts == 1


async def test_degraded_is_not_healed_unless_the_policy_says_so(db_url, tmp_path):
    async with lifecycle_guard(db_url, tmp_path) as life:
        component = await life.add("svc")
        life.svc.mode = "slow"
        await life.checks(2)
        assert await life.status(component["id"]) == "degraded"
        assert await life.heal() == [] and life.svc.restarts == 0
        life.svc.mode = "down"  # worse: now it is the policy's business
        await life.checks(2)
        assert await life.status(component["id"]) == "critical"
        assert len(await life.heal()) == 1 and life.svc.restarts == 1


async def test_degraded_opt_in_heals_and_a_still_degraded_target_fails_the_attempt_at_once(db_url, tmp_path):
    async with lifecycle_guard(db_url, tmp_path) as life:
        life.svc.after_restart = "slow"
        component = await life.add(
            "svc", {"heal_on": ["degraded", "critical"], "grace_period": 0, "verify_timeout": "5m"}
        )
        assert component["recovery"]["heal_on"] == ["degraded", "critical"]
        life.svc.mode = "slow"
        await life.checks(2)
        assert await life.status(component["id"]) == "degraded"
        [attempt_id] = await life.heal()
        assert (await life.attempt(attempt_id)).state == "verifying"
        await life.checks(2)  # answering, but still degraded after the action
        assert await life.status(component["id"]) == "degraded"
        attempt = await life.attempt(attempt_id)
        assert attempt.state == "failed" and "degraded after the action" in attempt.detail, attempt.detail


async def test_heal_on_round_trips_and_bad_values_are_refused(db_url, tmp_path):
    async with lifecycle_guard(db_url, tmp_path) as life:
        admin = await life.guard.headers("admin")
        component = await life.add("svc")
        assert "heal_on" not in component["recovery"]  # the default applies: critical and failed
        r = await life.guard.client.patch(
            "/api/v1/components/svc",
            headers=admin,
            json={"recovery": {**component["recovery"], "heal_on": ["failed", "degraded", "failed"]}},
        )
        assert r.status_code == 200, r.text
        assert r.json()["recovery"]["heal_on"] == ["degraded", "failed"]
        for bad in (["sleepy"], [], "recovering", 3):
            r = await life.guard.client.patch(
                "/api/v1/components/svc",
                headers=admin,
                json={"recovery": {**component["recovery"], "heal_on": bad}},
            )
            assert r.status_code == 422, r.text
            body = r.json()["error"]
            assert any(p.startswith("recovery.heal_on") for p in body["details"]["problems"]), body
        r = await life.guard.client.get("/api/v1/components/svc", headers=admin)
        assert r.json()["recovery"]["heal_on"] == ["degraded", "failed"]


async def test_heal_on_from_yaml(db_url, tmp_path):
    from app.config.loading import load_settings

    config = tmp_path / "guard.yaml"
    config.write_text(
        "components:\n"
        "  - name: yaml-svc\n"
        "    check: {kind: http, url: 'http://127.0.0.1:9/health'}\n"
        "    recovery:\n"
        "      heal_on: [degraded, critical]\n"
        "      strategies: [{kind: notify_only}]\n"
    )
    declared = [c.model_dump() for c in load_settings(config, environ={}).components]
    async with monitored(mon_settings(db_url, tmp_path, components=declared)) as (guard, _):
        r = await guard.client.get("/api/v1/components/yaml-svc", headers=await guard.headers("admin"))
        assert r.json()["recovery"]["heal_on"] == ["degraded", "critical"]


async def test_one_alertmanager_alert_one_restart_and_no_recovering_incident(db_url, tmp_path):
    async with lifecycle_guard(db_url, tmp_path) as life:
        life.svc.after_restart = "down"  # the restart takes a while to come up: its checks fail meanwhile
        component = await life.add("svc", {"grace_period": "5m"})
        await life.checks(2)
        assert await life.status(component["id"]) == "healthy"
        alert = {
            "status": "firing",
            "labels": {"alertname": "SvcErrors", "component": "svc", "severity": "critical"},
            "annotations": {"summary": "svc returns errors"},
            "fingerprint": "abc123",
        }
        r = await life.guard.client.post(
            "/api/v1/integrations/alertmanager",
            json={"alerts": [alert]},
            headers={"Authorization": f"Bearer {AM_TOKEN}"},
        )
        assert r.status_code == 200, r.text
        life.svc.hold = asyncio.Event()
        [attempt_id] = await life.engine.evaluate()
        await wait_until(lambda: life.svc.calls == 1, timeout=30)  # the restart is under way...
        life.svc.mode = "down"
        await life.checks(3)  # ...and the target is down meanwhile: the action's own effect
        life.svc.hold.set()
        await wait_until(lambda: life._acted(attempt_id), timeout=30)
        assert (await life.attempt(attempt_id)).state == "verifying"
        await life.checks(4)  # the restart's start-up: failures within the grace
        assert await life.heal() == []
        life.svc.mode = "up"
        await life.checks(2)
        assert await life.heal() == []
        assert life.svc.restarts == 1
        assert len(await life.incidents(component["id"])) == 1  # the external one only
        assert [t.current for t in await life.transitions(component["id"])] == [
            "healthy"
        ]  # never recovering/critical
        messages = [a["message"] for a in await life.alerts("svc")]
        assert not [m for m in messages if "recovering" in m], messages


async def test_healthy_while_the_action_still_runs_credits_the_heal(db_url, tmp_path):
    """A restart that waits for the service it started: the checks pass before the action ends. The
    health alert says the attempt healed it (not "recovered"), and the attempt ends succeeded."""
    async with lifecycle_guard(db_url, tmp_path) as life:
        component = await life.add("svc")
        life.svc.mode = "down"
        await life.checks(2)
        assert await life.status(component["id"]) == "critical"
        life.svc.hold = asyncio.Event()
        life.svc.after_restart = "up"
        [attempt_id] = await life.engine.evaluate()
        await wait_until(lambda: life.svc.calls == 1, timeout=30)  # the action runs...

        async def acting():
            return (await life.attempt(attempt_id)).acting_at is not None

        await wait_until(acting, timeout=30)
        life.svc.mode = "up"  # ...and the service is back before it returns
        await life.checks(1)
        assert await life.status(component["id"]) == "healthy"
        r = await life.guard.client.get(
            "/api/v1/alerts",
            headers=await life.guard.headers("admin"),
            params={"component": "svc", "status": "resolved"},
        )
        [health_alert] = [a for a in r.json()["items"] if a["fingerprint"] == "health:svc"]
        assert health_alert["resolution_action"] == f"re-run via webhook by healing attempt {attempt_id}"
        life.svc.hold.set()
        await wait_until(lambda: life._acted(attempt_id), timeout=30)
        assert (await life.attempt(attempt_id)).state == "succeeded"


async def test_the_action_ending_while_monitoring_credits_it_still_succeeds(db_url, tmp_path, monkeypatch):
    """The race behind the previous test: the action returns while the flush that saw the component
    healthy (and named the attempt as its healer) is still open. The verdict must see that flush's
    commit; read before it, the attempt went on verifying an incident already closed, and failed."""
    async with lifecycle_guard(db_url, tmp_path) as life:
        component = await life.add("svc")
        life.svc.mode = "down"
        await life.checks(2)
        life.svc.hold = asyncio.Event()
        life.svc.after_restart = "up"
        [attempt_id] = await life.engine.evaluate()
        await wait_until(lambda: life.svc.calls == 1, timeout=30)

        async def acting():
            return (await life.attempt(attempt_id)).acting_at is not None

        await wait_until(acting, timeout=30)
        alerts = life.engine.ports.alerts
        resolve = alerts.resolve

        async def resolve_then_let_the_action_end(session, **kwargs):
            done = await resolve(session, **kwargs)
            if "by healing attempt" in (kwargs.get("resolution_action") or ""):
                life.svc.hold.set()  # the action returns while this flush is still open
                await asyncio.sleep(1.0)  # and its verdict is recorded meanwhile
            return done

        monkeypatch.setattr(alerts, "resolve", resolve_then_let_the_action_end)
        life.svc.mode = "up"
        await life.checks(1)
        assert await life.status(component["id"]) == "healthy"
        await wait_until(lambda: life._acted(attempt_id), timeout=30)
        assert (await life.attempt(attempt_id)).state == "succeeded"
