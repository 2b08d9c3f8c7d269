"""E-mail (real SMTP server), PagerDuty, Opsgenie, Teams and Discord through the durable outbox,
each checked against its documented request shape. Both dialects."""

from __future__ import annotations

import asyncio

import pytest

from app.alerts.service import AlertService
from app.notify.outbox import OutboxSender
from tests.conftest import running_guard
from tests.pipelines.providers import OG_KEY, PD_KEY, SMTP_PASSWORD, SMTP_USER, providers, smtp_server


def outbox_only(rt):
    return [OutboxSender(rt.core, secret_box=rt.secret_box)]


async def wait_for(predicate, timeout=60.0):
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.05)


async def add_channel(guard, name, kind, config, **extra):
    r = await guard.client.post(
        "/api/v1/channels",
        headers=await guard.headers("admin"),
        json={"name": name, "kind": kind, "config": config, **extra},
    )
    assert r.status_code == 201, r.text
    return r.json()


async def notifications(guard):
    r = await guard.client.get(
        "/api/v1/notifications", params={"limit": 200}, headers=await guard.headers("admin")
    )
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def settled(guard, count):
    async def done():
        rows = await notifications(guard)
        return len(rows) >= count and all(n["status"] in ("delivered", "failed") for n in rows)

    await wait_for(done)
    return await notifications(guard)


async def test_incident_tools_get_trigger_acknowledge_resolve_with_one_key(notify_settings):
    async with providers() as prov, running_guard(notify_settings, build_services=outbox_only) as guard:
        pd = await add_channel(
            guard, "pd", "pagerduty", {"routing_key": PD_KEY, "url": prov.url + "/v2/enqueue"}
        )
        assert pd["config"]["routing_key"] == "********"
        await add_channel(guard, "og", "opsgenie", {"api_key": OG_KEY, "url": prov.url, "tags": ["etl"]})
        await add_channel(guard, "teams", "teams", {"url": prov.url + "/workflows/abc?sig=s3cret"})
        await add_channel(
            guard, "discord", "discord", {"url": prov.url + "/api/webhooks/1/t0ken", "username": "guard"}
        )

        async with guard.session() as session:
            raised = await AlertService(session, guard.runtime.settings).raise_alert(
                component="etl",
                severity="critical",
                message="loader exited 3 @everyone",
                fingerprint="health:etl",
                labels={"app": "sales"},
            )
        alert_id = raised.alert.id
        await settled(guard, 4)
        h = await guard.headers("operator")
        assert (
            await guard.client.post(f"/api/v1/alerts/{alert_id}/ack", json={"comment": "on it"}, headers=h)
        ).status_code == 200
        await settled(guard, 6)  # only PagerDuty and Opsgenie hear acknowledgements
        assert (
            await guard.client.post(
                f"/api/v1/alerts/{alert_id}/resolve", json={"resolution_action": "restarted"}, headers=h
            )
        ).status_code == 200
        rows = await settled(guard, 10)

    assert prov.problems == []
    assert all(n["status"] == "delivered" for n in rows), rows
    key = f"pipeline-guard-alert-{alert_id}"
    pd_events = prov.received["pagerduty"]
    assert [e["event_action"] for e in pd_events] == ["trigger", "acknowledge", "resolve"]
    assert {e["dedup_key"] for e in pd_events} == {key}
    trigger = pd_events[0]["payload"]
    assert trigger["severity"] == "critical" and trigger["component"] == "etl" and trigger["group"] == "sales"
    assert "loader exited 3" in trigger["summary"]
    og = prov.received["opsgenie"]
    assert [r["path"] for r in og] == [
        "/v2/alerts",
        f"/v2/alerts/{key}/acknowledge",
        f"/v2/alerts/{key}/close",
    ]
    assert (
        og[0]["body"]["alias"] == key
        and og[0]["body"]["priority"] == "P1"
        and og[0]["body"]["tags"] == ["etl"]
    )
    assert og[0]["body"]["entity"] == "etl" and og[0]["body"]["details"] == {"app": "sales"}
    assert len(prov.received["teams"]) == 2 and len(prov.received["discord"]) == 2
    facts = prov.received["teams"][0]["attachments"][0]["content"]["body"][1]["facts"]
    assert {"title": "Component", "value": "etl"} in facts
    firing, resolved = prov.received["discord"]
    assert firing["username"] == "guard" and firing["embeds"][0]["color"] == 0xD00000
    assert resolved["embeds"][0]["color"] == 0x2EB886
    assert any(f["value"] == "restarted" for f in resolved["embeds"][0]["fields"])


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_email_over_a_real_smtp_server(notify_settings):
    with smtp_server() as box:
        async with running_guard(notify_settings, build_services=outbox_only) as guard:
            base = {
                "host": "127.0.0.1",
                "port": box.port,
                "security": "none",
                "username": SMTP_USER,
                "password": SMTP_PASSWORD,
                "from_address": "guard@example.org",
                "subject_prefix": "[guard]",
            }
            created = await add_channel(
                guard, "mail", "email", {**base, "to": ["oncall@example.org", "lead@example.org"]}
            )
            assert created["config"]["password"] == "********" and created["config"]["host"] == "127.0.0.1"
            await add_channel(guard, "bounce", "email", {**base, "to": ["nobody@example.org"]})
            bad = await guard.client.post(
                "/api/v1/channels",
                headers=await guard.headers("admin"),
                json={"name": "bad", "kind": "email", "config": {**base, "to": ["not-an-address"]}},
            )
            assert bad.status_code == 422 and bad.json()["error"]["type"]

            async with guard.session() as session:
                await AlertService(session, guard.runtime.settings).raise_alert(
                    component="etl",
                    severity="warning",
                    message="rows dropped by 80%",
                    fingerprint="anomaly:etl",
                )
            rows = await settled(guard, 2)

            test = await guard.client.post(
                f"/api/v1/channels/{created['id']}/test", headers=await guard.headers("admin")
            )
            assert test.status_code == 200 and test.json()["delivered"] is True, test.text

    by_channel = {n["channel_id"]: n for n in rows}
    assert by_channel[created["id"]]["status"] == "delivered"
    bounced = next(n for n in rows if n["channel_id"] != created["id"])
    assert bounced["status"] == "failed" and bounced["attempts"] == 1  # 550 is permanent: not retried
    assert all(ok for _, user, ok in box.logins) and box.logins
    (sender, rcpts, mail), test_mail = box.messages
    assert sender == "guard@example.org" and rcpts == ["oncall@example.org", "lead@example.org"]
    assert mail["Subject"] == "[guard] [warning] etl: alert firing"
    assert mail["Message-ID"].endswith("@pipeline-guard>") and mail["X-Pipeline-Guard-Event"] == "firing"
    body = mail.get_content()
    assert "Component: etl" in body and "rows dropped by 80%" in body
    assert "test notification" in test_mail[2]["Subject"].lower()


async def test_email_starttls_verifies_the_relay_certificate(notify_settings, tmp_path):
    from tests.pipelines.providers import self_signed, starttls_server

    cert, key = self_signed(tmp_path)
    with starttls_server(cert, key) as box:
        async with running_guard(notify_settings, build_services=outbox_only) as guard:
            base = {
                "host": "127.0.0.1",
                "port": box.port,
                "username": SMTP_USER,
                "password": SMTP_PASSWORD,
                "from_address": "guard@example.org",
                "to": ["oncall@example.org"],
            }  # security: starttls
            untrusted = await add_channel(guard, "untrusted", "email", base)
            trusted = await add_channel(guard, "trusted", "email", {**base, "ca_file": str(cert)})
            h = await guard.headers("admin")
            refused = (await guard.client.post(f"/api/v1/channels/{untrusted['id']}/test", headers=h)).json()
            assert refused["delivered"] is False and "certificate" in refused["error"]
            sent = (await guard.client.post(f"/api/v1/channels/{trusted['id']}/test", headers=h)).json()
            assert sent["delivered"] is True, sent
            bad = await guard.client.post(
                "/api/v1/channels",
                headers=h,
                json={
                    "name": "nofile",
                    "kind": "email",
                    "config": {**base, "ca_file": str(tmp_path / "missing.pem")},
                },
            )
            assert bad.status_code == 422
    [(_, rcpts, mail)] = box.messages
    assert rcpts == ["oncall@example.org"] and mail["To"] == "oncall@example.org"
    assert box.logins and all(ok for _, _, ok in box.logins)  # logged in only after STARTTLS


async def test_channels_declared_in_the_config_file(db_url, tmp_path):
    from app.alerts.maintenance import AlertMaintenance
    from app.config.loading import load_settings, validate_config_file
    from app.notify.declarative import sync_declared_channels
    from tests.conftest import TEST_SECRET

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "channels:\n  - {name: x, kind: pagerduty, config: {url: 'https://events.pagerduty.com/v2/enqueue'}}\n"
        "  - {name: y, kind: pigeon, config: {}}\n"
    )
    problems = validate_config_file(bad, environ={})
    assert any(p.startswith("channels.0") and "routing_key" in p for p in problems), problems
    assert any(p.startswith("channels.1") and "pigeon" in p for p in problems), problems

    path = tmp_path / "guard.yaml"
    path.write_text(
        f"env: test\ndatabase_url: {db_url}\ndata_dir: {tmp_path / 'var'}\n"
        f"security:\n  secret_key: {TEST_SECRET}\n  rate_limiting: {{enabled: false}}\n"
        "  ssrf_allowlist: [127.0.0.1/32]\n"
        "channels:\n"
        "  - name: oncall\n    kind: pagerduty\n    severities: [critical]\n"
        "    config: {routing_key: '${PD_KEY}', url: 'http://127.0.0.1:9/v2/enqueue'}\n"
        "  - name: data-team\n    kind: email\n    escalate_to: oncall\n    escalate_after: 15m\n"
        "    config: {host: 127.0.0.1, port: 2525, from_address: guard@example.org, to: [data@example.org],\n"
        "             password: '${SMTP_PASSWORD}', username: guard}\n"
    )
    settings = load_settings(path, environ={"PD_KEY": PD_KEY, "SMTP_PASSWORD": SMTP_PASSWORD})
    async with running_guard(
        settings,
        build_services=lambda rt: [
            AlertMaintenance(rt.core, secret_box=rt.secret_box, published=rt.alerts.maintenance_published)
        ],
    ) as guard:
        h = await guard.headers("admin")
        listed = {
            c["name"]: c for c in (await guard.client.get("/api/v1/channels", headers=h)).json()["items"]
        }
        assert set(listed) == {"oncall", "data-team"}
        oncall, team = listed["oncall"], listed["data-team"]
        assert oncall["source"] == "config" and oncall["config"]["routing_key"] == "********"
        assert oncall["severities"] == ["critical"]
        assert team["escalate_to"] == oncall["id"] and team["escalate_after"] == 900
        assert team["config"]["password"] == "********"
        r = await guard.client.patch(f"/api/v1/channels/{oncall['id']}", json={"enabled": False}, headers=h)
        assert r.status_code == 409 and r.json()["error"]["details"]["source"] == "config"
        assert (await guard.client.delete(f"/api/v1/channels/{oncall['id']}", headers=h)).status_code == 409

        state = guard.runtime
        assert await sync_declared_channels(state.core, state.secret_box) == {
            "created": [],
            "updated": [],
            "disabled": [],
        }
        changed = state.settings.channels[0].model_copy(
            update={"config": {**state.settings.channels[0].config, "source": "etl-guard"}}
        )
        state.settings.channels = [changed]
        report = await sync_declared_channels(state.core, state.secret_box)
        assert report == {"created": [], "updated": ["oncall"], "disabled": ["data-team"]}
        listed = {
            c["name"]: c for c in (await guard.client.get("/api/v1/channels", headers=h)).json()["items"]
        }
        assert listed["oncall"]["config"]["source"] == "etl-guard" and listed["data-team"]["enabled"] is False
