"""Durable delivery to a real receiver: failures, timeouts, 429 + Retry-After, restarts. Both dialects."""

from __future__ import annotations

import asyncio
import json
import logging

from sqlalchemy import select

from app.alerts.service import AlertService
from app.db.models import DeliveryAttempt, Notification
from app.notify.outbox import OutboxSender
from tests.conftest import running_guard
from tests.notify.conftest import HOOK_SECRET


async def create_channel(guard, receiver, name="hook", kind="webhook", path="/hook", **extra):
    config = {"url": receiver.url + path}
    if kind == "webhook":
        config["secret"] = HOOK_SECRET
    r = await guard.client.post(
        "/api/v1/channels",
        headers=await guard.headers("admin"),
        json={"name": name, "kind": kind, "config": config, **extra},
    )
    assert r.status_code == 201, r.text
    return r.json()


async def raise_alerts(guard, n, component="etl"):
    async with guard.session() as session:
        service = AlertService(session, guard.runtime.settings)
        for i in range(n):
            await service.raise_alert(component=f"{component}-{i}", severity="critical", message=f"down {i}")


async def wait_for(predicate, timeout=20.0):
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.05)


async def all_rows(guard, model):
    async with guard.session() as session:
        return list((await session.execute(select(model).order_by(model.id))).scalars())


def outbox_only(rt):
    return [OutboxSender(rt.core, secret_box=rt.secret_box)]


async def test_fail_timeout_429_then_recover_delivers_exactly_once(notify_settings, receiver, caplog):
    caplog.set_level(logging.INFO)
    receiver.script.extend(["fail", "hang", "429", "fail"])
    async with running_guard(notify_settings, build_services=outbox_only) as g:
        await create_channel(g, receiver)
        await raise_alerts(g, 3)

        async def delivered():
            rows = await all_rows(g, Notification)
            return rows and all(n.status == "delivered" for n in rows)

        await wait_for(delivered)
        rows = await all_rows(g, Notification)
        attempts = await all_rows(g, DeliveryAttempt)
        metrics = (await g.client.get("/metrics")).text

    keys = {n.idempotency_key for n in rows}
    assert len(rows) == 3
    # Every notification processed exactly once by the receiver, despite the retries.
    assert set(receiver.accepted) == keys and all(v == 1 for v in receiver.accepted.values())
    outcomes = [(a.outcome, a.status_code) for a in attempts]
    assert outcomes.count(("delivered", 200)) == 3
    assert ("retry", 500) in outcomes and ("retry", 429) in outcomes
    assert any(a.outcome == "retry" and a.status_code is None and "timeout" in a.error for a in attempts)
    # Retry-After: 1 was honoured (the next try of that notification came at least ~1 s later).
    by_key: dict[str, list] = {}
    for req in receiver.requests:
        by_key.setdefault(req["key"], []).append(req)
    throttled = next(reqs for reqs in by_key.values() if any(r["behaviour"] == "429" for r in reqs))
    i = next(i for i, r in enumerate(throttled) if r["behaviour"] == "429")
    assert throttled[i + 1]["at"] - throttled[i]["at"] >= 0.9
    assert 'pipeline_guard_notifications_total{channel="hook",outcome="delivered"} 3.0' in metrics
    assert "pipeline_guard_outbox_pending 0.0" in metrics
    assert 'pipeline_guard_alerts_firing{severity="critical"} 3.0' in metrics
    # Every request is signed, and the signature verifies over the raw body.
    assert all(receiver.verify(req) for req in receiver.requests)
    body = json.loads(receiver.requests[-1]["body"])
    assert body["version"] == "1" and body["idempotency_key"] == receiver.requests[-1]["key"]
    assert body["alert"]["severity"] == "critical" and body["kind"] == "firing"


async def test_restart_mid_delivery_loses_nothing(notify_settings, receiver):
    settings = notify_settings.model_copy(deep=True)
    settings.alerting.request_timeout = 20  # the receiver hangs longer than the guard lives
    receiver.default = "hang"
    async with running_guard(settings, build_services=outbox_only) as g:
        await create_channel(g, receiver)
        await raise_alerts(g, 1)
        async with asyncio.timeout(10):
            await receiver.got_request.wait()
    # The guard stopped while the request was in flight: the row went back to the outbox.
    receiver.default = "ok"
    async with running_guard(settings, build_services=outbox_only) as g2:

        async def delivered():
            rows = await all_rows(g2, Notification)
            return rows[0].status == "delivered"

        await wait_for(delivered)
        rows = await all_rows(g2, Notification)
    assert len(rows) == 1
    assert receiver.accepted == {rows[0].idempotency_key: 1}
    assert len({r["key"] for r in receiver.requests}) == 1  # the same notification, the same key


async def test_slack_payload_shape_and_language(notify_settings, receiver):
    async with running_guard(notify_settings, build_services=outbox_only) as g:
        await create_channel(
            g, receiver, name="slack-de", kind="slack", path="/services/T0/B0/XYZ", language="de"
        )
        await raise_alerts(g, 1)

        async def delivered():
            rows = await all_rows(g, Notification)
            return rows and rows[0].status == "delivered"

        await wait_for(delivered)
    payload = json.loads(receiver.requests[0]["body"])
    assert receiver.requests[0]["path"] == "/services/T0/B0/XYZ"
    assert payload["text"] == "[kritisch] etl-0: Alarm ausgelöst"
    (attachment,) = payload["attachments"]
    assert attachment["color"] == "#d00000"
    assert attachment["fields"][0] == {"title": "Komponente", "value": "etl-0", "short": True}
    assert attachment["fields"][1] == {"title": "Meldung", "value": "down 0", "short": False}


async def test_permanent_failure_and_max_attempts(notify_settings, receiver):
    settings = notify_settings.model_copy(deep=True)
    settings.alerting.max_attempts = 2
    receiver.script.extend(["fail", "fail", "fail"])
    async with running_guard(settings, build_services=outbox_only) as g:
        await create_channel(g, receiver)
        await raise_alerts(g, 1)

        async def failed():
            rows = await all_rows(g, Notification)
            return rows and rows[0].status == "failed"

        await wait_for(failed)
        r = await g.client.get("/api/v1/notifications", headers=await g.headers("viewer"))
        item = r.json()["items"][0]
    assert item["attempts"] == 2 and item["last_error"] == "HTTP 500"
    assert [a["outcome"] for a in item["delivery_log"]] == ["retry", "failed"]


async def test_default_services_include_alerting_loops(notify_settings):
    from app.platform.compose import default_services
    from app.platform.events import HealthTransition

    async with running_guard(notify_settings, build_services=default_services) as g:
        names = {s.name for s in g.runtime.services}
        assert {"alert-maintenance", "notify-escalation", "notify-outbox", "audit-retention"} <= names
        assert g.runtime.events.handlers(HealthTransition)
        assert (await g.client.get("/ready")).status_code == 200


async def test_undecryptable_channel_is_retried_not_failed(notify_settings, receiver):
    """A replica whose keys cannot read a channel's config retries with back-off (another replica, or
    this one after the key is fixed, can still deliver); only max_attempts makes it final."""
    from cryptography.fernet import Fernet
    from sqlalchemy import update

    from app.db.models import Channel

    settings = notify_settings.model_copy(deep=True)
    settings.alerting.max_attempts = 3
    async with running_guard(settings, build_services=outbox_only) as g:
        channel = await create_channel(g, receiver)
        foreign = (
            Fernet(Fernet.generate_key())
            .encrypt(json.dumps({"url": receiver.url + "/hook"}).encode())
            .decode()
        )
        async with g.session() as session:
            await session.execute(
                update(Channel).where(Channel.id == channel["id"]).values(config_encrypted=foreign)
            )
        await raise_alerts(g, 1)

        async def failed():
            rows = await all_rows(g, Notification)
            return rows and rows[0].status == "failed"

        await wait_for(failed, timeout=30)
        r = await g.client.get("/api/v1/notifications", headers=await g.headers("viewer"))
        item = r.json()["items"][0]
    assert [a["outcome"] for a in item["delivery_log"]] == ["retry", "retry", "failed"]
    assert "unusable" in item["last_error"]
    assert receiver.requests == []
