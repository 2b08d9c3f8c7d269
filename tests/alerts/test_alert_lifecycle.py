"""Dedup, cooldown, ack with snooze, silences, resolve, events -> alerts. Both dialects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from app.alerts.service import AlertService
from app.alerts.silences import SilenceService
from app.db.models import Alert, AlertStatus, Notification
from app.notify.channel_service import ChannelService
from app.notify.schemas import ChannelCreate
from app.platform.events import (
    AnomalyCleared,
    AnomalyDetected,
    HealthTransition,
    IncidentClosed,
    IncidentOpened,
)


async def add_channel(guard, name="ops", **extra):
    async with guard.session() as session:
        service = ChannelService(session, guard.runtime.settings, guard.runtime.secret_box)
        channel = await service.create(
            ChannelCreate(name=name, kind="webhook", config={"url": "http://127.0.0.1:9/hook"}, **extra)
        )
        return channel.id


async def notifications(guard, **where):
    async with guard.session() as session:
        query = select(Notification).order_by(Notification.id)
        for key, value in where.items():
            query = query.where(getattr(Notification, key) == value)
        return list((await session.execute(query)).scalars())


async def raise_(guard, at=None, **kwargs):
    params = {
        "component": "etl",
        "severity": "critical",
        "message": "etl is down",
        "fingerprint": "health:etl",
    }
    params.update(kwargs)
    async with guard.session() as session:
        return await AlertService(session, guard.runtime.settings).raise_alert(at=at, **params)


async def test_dedup_and_cooldown(aguard):
    await add_channel(aguard)
    t0 = datetime.now(UTC)
    first = await raise_(aguard, at=t0)
    assert first.created and first.notified
    second = await raise_(aguard, at=t0 + timedelta(seconds=10), message="etl is still down")
    assert not second.created and not second.notified  # inside the 60 s cooldown
    third = await raise_(aguard, at=t0 + timedelta(seconds=61))
    assert not third.created and third.notified  # cooldown over: one re-notification
    fourth = await raise_(aguard, at=t0 + timedelta(seconds=70))
    assert not fourth.notified
    async with aguard.session() as session:
        alerts = list((await session.execute(select(Alert))).scalars())
    assert len(alerts) == 1 and alerts[0].count == 4
    assert alerts[0].id == first.alert.id
    assert [n.kind for n in await notifications(aguard)] == ["firing", "repeat"]

    # A higher severity is news: notified at once, cooldown or not.
    upgraded = await raise_(aguard, fingerprint="cpu", severity="warning", message="cpu high", at=t0)
    assert upgraded.notified
    again = await raise_(aguard, fingerprint="cpu", severity="critical", message="cpu very high", at=t0)
    assert again.notified and again.alert.severity == "critical"

    # After a resolve, the same fingerprint opens a new alert (the unique index covers active alerts only).
    async with aguard.session() as session:
        await AlertService(session, aguard.runtime.settings).resolve(
            first.alert.id, resolution_action="fixed"
        )
    reopened = await raise_(aguard, at=t0 + timedelta(seconds=80))
    assert reopened.created and reopened.alert.id != first.alert.id


async def test_ack_with_until_reopens_and_api(aguard):
    await add_channel(aguard)
    raised = await raise_(aguard)
    alert_id = raised.alert.id
    viewer = await aguard.headers("viewer")
    operator = await aguard.headers("operator")
    r = await aguard.client.post(f"/api/v1/alerts/{alert_id}/ack", headers=viewer, json={})
    assert r.status_code == 403
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    r = await aguard.client.post(f"/api/v1/alerts/{alert_id}/ack", headers=operator, json={"until": past})
    assert r.status_code == 422, r.text
    until = datetime.now(UTC) + timedelta(minutes=5)
    r = await aguard.client.post(
        f"/api/v1/alerts/{alert_id}/ack",
        headers=operator,
        json={"until": until.isoformat(), "comment": "looking"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "acknowledged" and body["acknowledged_by"] == "operator-user"

    # Acknowledged: repeats stay quiet even after the cooldown.
    assert not (await raise_(aguard, at=datetime.now(UTC) + timedelta(seconds=120))).notified
    async with aguard.session() as session:
        service = AlertService(session, aguard.runtime.settings)
        assert await service.reopen_expired_acks(datetime.now(UTC)) == 0
        assert await service.reopen_expired_acks(until + timedelta(seconds=1)) == 1
    r = await aguard.client.get(f"/api/v1/alerts/{alert_id}", headers=viewer)
    detail = r.json()
    assert detail["status"] == "firing" and detail["acknowledged_by"] is None
    kinds = [e["kind"] for e in detail["history"]]
    assert kinds[:2] == ["raised", "notified"] and "acknowledged" in kinds and "reopened" in kinds
    assert [n.kind for n in await notifications(aguard)] == ["firing", "firing"]  # re-opened = told again

    # Resolve through the API: resolution recorded, resolve notification to the channel that heard of it.
    r = await aguard.client.post(f"/api/v1/alerts/{alert_id}/resolve", headers=operator, json={})
    assert r.status_code == 200, r.text
    assert (
        r.json()["resolution_action"] == "resolved by operator operator-user" and r.json()["resolved"] is True
    )
    assert (await notifications(aguard))[-1].kind == "resolved"
    r = await aguard.client.post(f"/api/v1/alerts/{alert_id}/resolve", headers=operator, json={})
    assert r.status_code == 409
    r = await aguard.client.get("/api/v1/alerts", headers=viewer)
    assert r.json()["total"] == 0  # active only by default
    r = await aguard.client.get("/api/v1/alerts", headers=viewer, params={"status": "resolved"})
    assert r.json()["total"] == 1
    r = await aguard.client.post("/api/v1/alerts/999/ack", headers=operator, json={})
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"


async def test_silence_mutes_and_expires(aguard):
    await add_channel(aguard)
    operator = await aguard.headers("operator")
    ends = datetime.now(UTC) + timedelta(minutes=10)
    r = await aguard.client.post(
        "/api/v1/silences",
        headers=operator,
        json={
            "component": "etl*",
            "labels": {"region": "eu"},
            "ends_at": ends.isoformat(),
            "comment": "maintenance",
        },
    )
    assert r.status_code == 201, r.text
    silence = r.json()
    assert silence["active"] and silence["created_by"] == "operator-user"

    muted = await raise_(aguard, labels={"region": "eu"})
    assert muted.alert.status == AlertStatus.SILENCED and not muted.notified
    other = await raise_(aguard, fingerprint="x", labels={"region": "us"})
    assert other.alert.status == AlertStatus.FIRING and other.notified
    async with aguard.session() as session:
        silences = SilenceService(session)
        assert await silences.matches("etl-load", {"region": "eu", "team": "a"})
        assert not await silences.matches("etl-load", {"region": "us"})
        assert not await silences.matches("etl-load", {"region": "eu"}, at=ends + timedelta(seconds=1))
        # It expires by itself: once over, the muted alert fires and is notified.
        service = AlertService(session, aguard.runtime.settings)
        assert await service.apply_silences(datetime.now(UTC)) == (0, 0)
        assert await service.apply_silences(ends + timedelta(seconds=1)) == (0, 1)
        alert = await session.get(Alert, muted.alert.id)
        assert alert.status == AlertStatus.FIRING
    assert len(await notifications(aguard, alert_id=muted.alert.id)) == 1

    # A new silence mutes a firing alert; expiring it (DELETE) lifts it again.
    r = await aguard.client.post(
        "/api/v1/silences", headers=operator, json={"component": "etl", "ends_at": ends.isoformat()}
    )
    second = r.json()["id"]
    async with aguard.session() as session:
        assert (await AlertService(session, aguard.runtime.settings).apply_silences())[0] == 2
    r = await aguard.client.delete(f"/api/v1/silences/{second}", headers=operator)
    assert r.status_code == 200 and r.json()["active"] is False
    r = await aguard.client.delete(f"/api/v1/silences/{silence['id']}", headers=operator)
    r = await aguard.client.get("/api/v1/silences", headers=await aguard.headers("viewer"))
    assert r.json()["total"] == 0
    async with aguard.session() as session:
        assert (await AlertService(session, aguard.runtime.settings).apply_silences())[1] == 2
    r = await aguard.client.post(
        "/api/v1/silences",
        headers=operator,
        json={"ends_at": (datetime.now(UTC) - timedelta(seconds=1)).isoformat()},
    )
    assert r.status_code == 422


async def test_domain_events_become_alerts(aguard):
    now = datetime.now(UTC)
    async with aguard.session() as session:
        await aguard.runtime.events.publish(
            HealthTransition(
                component="etl",
                component_id=None,
                previous="healthy",
                current="critical",
                reason="3 failures",
                at=now,
                critical=True,
                labels={"region": "eu"},
            ),
            session,
        )
        await aguard.runtime.events.publish(
            IncidentOpened(
                component="etl",
                component_id=None,
                incident_id=7,
                status="critical",
                reason="3 failures",
                at=now,
            ),
            session,
        )
        await aguard.runtime.events.publish(
            AnomalyDetected(
                component="trainer",
                metric_name="loss",
                labels={},
                rule_id=3,
                rule_kind="baseline",
                severity="warning",
                message="loss anomaly score 4.2",
                evidence={"score": 4.2},
                at=now,
            ),
            session,
        )
    async with aguard.session() as session:
        alerts = {a.component: a for a in (await session.execute(select(Alert))).scalars()}
    assert (
        alerts["etl"].count == 2 and alerts["etl"].incident_id == 7 and alerts["etl"].severity == "critical"
    )
    assert alerts["trainer"].source == "detection"
    async with aguard.session() as session:
        await aguard.runtime.events.publish(
            IncidentClosed(component="etl", component_id=None, incident_id=7, reason="healthy again", at=now),
            session,
        )
        await aguard.runtime.events.publish(
            AnomalyCleared(
                component="trainer", metric_name="loss", labels={}, rule_id=3, rule_kind="baseline", at=now
            ),
            session,
        )
    async with aguard.session() as session:
        rows = list((await session.execute(select(Alert))).scalars())
        assert all(a.status == "resolved" for a in rows)
        etl = next(a for a in rows if a.component == "etl")
        assert etl.resolution_action == "incident 7 closed: healthy again"
        assert (await session.execute(select(func.count()).select_from(Alert))).scalar_one() == 2
