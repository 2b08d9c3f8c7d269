"""Escalation, SSRF refusals, secrets masked and never logged, channel test sends, key rotation."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from cryptography.fernet import Fernet
from sqlalchemy import text

from app.db.models import Notification
from app.notify.escalation import escalate_due
from app.security.crypto import SecretBox
from tests.conftest import running_guard
from tests.notify.test_outbox_delivery import all_rows, create_channel, outbox_only, raise_alerts, wait_for

SECRET_URL_PATH = "/hooks/T0-very-secret-path"
HEADER_TOKEN = "Bearer header-token-do-not-leak"


async def test_escalation_after_t(notify_settings, receiver):
    async with running_guard(notify_settings) as g:
        pager = await create_channel(g, receiver, name="pager", path="/pager", escalation_only=True)
        await create_channel(
            g, receiver, name="team", path="/team", escalate_to=pager["id"], escalate_after=30
        )
        await raise_alerts(g, 2)
        rows = await all_rows(g, Notification)
        assert [n.kind for n in rows] == ["firing", "firing"]  # escalation-only channel not routed to
        alert_ids = [n.alert_id for n in rows]
        r = await g.client.post(
            f"/api/v1/alerts/{alert_ids[1]}/ack", headers=await g.headers("operator"), json={}
        )
        assert r.status_code == 200
        now = datetime.now(UTC)
        async with g.session() as session:
            assert await escalate_due(session, now) == 0  # T not reached yet
        async with g.session() as session:
            assert (
                await escalate_due(session, now + timedelta(seconds=31)) == 1
            )  # only the unacknowledged one
        async with g.session() as session:
            assert await escalate_due(session, now + timedelta(seconds=62)) == 0  # each step once
        rows = await all_rows(g, Notification)
        escalation = [n for n in rows if n.kind == "escalation"]
        assert len(escalation) == 1 and escalation[0].channel_id == pager["id"]
        assert escalation[0].alert_id == alert_ids[0]
        r = await g.client.get(f"/api/v1/alerts/{alert_ids[0]}", headers=await g.headers("viewer"))
        assert r.json()["escalation_level"] == 1 and "escalated" in [e["kind"] for e in r.json()["history"]]
        # A loop: pager -> team -> pager is refused.
        r = await g.client.patch(
            f"/api/v1/channels/{pager['id']}",
            headers=await g.headers("admin"),
            json={"escalate_to": pager["id"] + 1},
        )
        assert r.status_code == 422


async def test_ssrf_refused(db_url, tmp_path):
    from tests.conftest import make_settings

    async with running_guard(make_settings(db_url, tmp_path)) as g:  # no allowlist
        admin = await g.headers("admin")
        for url in (
            "http://169.254.169.254/latest/meta-data",
            "http://127.0.0.1:8080/x",
            "http://10.1.2.3/",
            "http://[::1]/",
            "file:///etc/passwd",
            "gopher://127.0.0.1/",
            "http://2130706433/",
        ):
            r = await g.client.post(
                "/api/v1/channels",
                headers=admin,
                json={"name": "x", "kind": "webhook", "config": {"url": url}},
            )
            assert r.status_code == 422, (url, r.text)
            assert r.json()["error"]["type"] == "validation_error"


async def test_ssrf_refused_at_send_time(notify_settings, receiver, db_url, tmp_path):
    from tests.conftest import make_settings

    async with running_guard(notify_settings) as g:
        await create_channel(g, receiver)  # allowlisted when created
        await raise_alerts(g, 1)
    # The allowlist was narrowed since: the sender refuses instead of calling loopback.
    narrowed = make_settings(db_url, tmp_path, alerting=notify_settings.alerting.model_dump())
    async with running_guard(narrowed, build_services=outbox_only) as g:

        async def failed():
            rows = await all_rows(g, Notification)
            return rows[0].status == "failed"

        await wait_for(failed)
        assert "refused" in (await all_rows(g, Notification))[0].last_error
    assert receiver.requests == []


async def test_secrets_never_in_responses_or_logs(notify_settings, receiver, caplog):
    caplog.set_level(logging.DEBUG)
    receiver.script.extend(["fail"])
    secret_url = receiver.url + SECRET_URL_PATH
    async with running_guard(notify_settings, build_services=outbox_only) as g:
        admin = await g.headers("admin")
        r = await g.client.post(
            "/api/v1/channels",
            headers=admin,
            json={
                "name": "hook",
                "kind": "webhook",
                "config": {
                    "url": secret_url,
                    "secret": "s3cr3t-hmac-key-123456",
                    "headers": {"Authorization": HEADER_TOKEN},
                },
            },
        )
        assert r.status_code == 201, r.text
        channel = r.json()
        texts = [r.text]
        assert channel["config"]["url"].endswith("/********") and channel["config"]["secret"] == "********"
        texts.append((await g.client.get("/api/v1/channels", headers=admin)).text)
        texts.append((await g.client.get(f"/api/v1/channels/{channel['id']}", headers=admin)).text)
        r = await g.client.patch(f"/api/v1/channels/{channel['id']}", headers=admin, json={"language": "fr"})
        texts.append(r.text)
        r = await g.client.post(f"/api/v1/channels/{channel['id']}/test", headers=admin)
        assert r.status_code == 200 and r.json()["delivered"] is False  # the scripted failure
        texts.append(r.text)
        r = await g.client.post(f"/api/v1/channels/{channel['id']}/test", headers=admin)
        assert r.json()["delivered"] is True
        await raise_alerts(g, 1)

        async def delivered():
            rows = await all_rows(g, Notification)
            return all(n.status in ("delivered", "failed") for n in rows) and len(rows) == 3

        await wait_for(delivered)
        texts.append((await g.client.get("/api/v1/notifications", headers=admin)).text)
        texts.append((await g.client.get("/api/v1/audit", headers=admin)).text)
        async with g.session() as session:
            stored = (await session.execute(text("SELECT config_encrypted FROM channels"))).scalar_one()
    texts.append(stored)
    # Everything the guard (and the libraries it uses) logged; the receiver's own access log is not ours.
    texts.append(
        "\n".join(
            f"{r.name} {r.getMessage()}"
            for r in caplog.records
            if not r.name.startswith(("aiohttp.access", "aiohttp.server", "aiohttp.web"))
        )
    )
    # The receiver did get the real header and URL path: only the guard's outputs must not show them.
    assert receiver.requests[-1]["headers"]["Authorization"] == HEADER_TOKEN
    for blob in texts:
        for secret in (SECRET_URL_PATH, "s3cr3t-hmac-key-123456", "header-token-do-not-leak"):
            assert secret not in blob


def test_secret_box_rotation():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = SecretBox([old]).encrypt_json({"url": "https://x"})
    rotated_box = SecretBox([new, old])
    assert rotated_box.decrypt_json(token) == {"url": "https://x"}
    rotated = rotated_box.rotate(token)
    assert SecretBox([new]).decrypt_json(rotated) == {"url": "https://x"}
    assert (
        SecretBox(["a passphrase, not a fernet key"]).decrypt(
            SecretBox(["a passphrase, not a fernet key"]).encrypt("v")
        )
        == "v"
    )


def test_production_requires_encryption_key(tmp_path):
    import pytest

    from app.config.settings import Settings, production_problems
    from app.core.errors import ConfigurationError
    from app.security.crypto import resolve_encryption_keys

    settings = Settings(env="production", data_dir=tmp_path)
    assert any("ENCRYPTION_KEY" in p for p in production_problems(settings))
    with pytest.raises(ConfigurationError):
        resolve_encryption_keys(settings)
    dev = Settings(env="development", data_dir=tmp_path)
    assert resolve_encryption_keys(dev) == resolve_encryption_keys(dev)  # generated once, persisted
