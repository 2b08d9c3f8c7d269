"""Credentials of a recovery webhook are write-only for every role, like those of checks and
channels: an ``Authorization`` header given as a plain ``{name: value}``, a header marked ``secret``
and a token in the URL's query never come back from the API (viewers could read them all in clear),
the header is not stored in clear, and a client that PATCHes back what it read keeps them. The
webhook still carries the real values: a real loopback receiver only answers 200 to them."""

from __future__ import annotations

import json

import pytest
from aiohttp import web
from sqlalchemy import text

from app.security.crypto import MASK
from tests.conftest import make_settings, running_guard
from tests.healing.conftest import wait_until
from tests.support.loopback import serve_app

SECRETS = ("s3cr3t-BEARER", "s3cr3t-APIKEY", "s3cr3t-QUERY")


@pytest.fixture
async def receiver():
    seen: list[dict] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(
            {
                "auth": request.headers.get("Authorization"),
                "key": request.headers.get("X-Deploy-Key"),
                "token": request.query.get("token"),
            }
        )
        ok = (
            request.headers.get("Authorization") == f"Bearer {SECRETS[0]}"
            and request.headers.get("X-Deploy-Key") == SECRETS[1]
            and request.query.get("token") == SECRETS[2]
        )
        # A receiver that echoes the request (many CI/CD APIs do, in their error pages too).
        echo = f"{request.method} {request.rel_url} " + " ".join(
            f"{k}={v}" for k, v in request.headers.items()
        )
        return web.Response(status=200 if ok else 401, text=echo)

    app = web.Application()
    app.router.add_post("/rerun", handler)
    async with serve_app(app) as port:
        yield port, seen


def _assert_no_secret(text_: str) -> None:
    for secret in SECRETS:
        assert secret not in text_, f"{secret} leaked: {text_[:600]}"


async def test_webhook_strategy_credentials_are_write_only_and_still_sent(db_url, tmp_path, receiver):
    port, seen = receiver
    settings = make_settings(db_url, tmp_path, security={"ssrf_allowlist": ["127.0.0.1/32"]})
    recovery = {
        "strategies": [
            {
                "kind": "webhook",
                "url": f"http://127.0.0.1:{port}/rerun?stage=etl&token={SECRETS[2]}",
                "headers": [
                    {"name": "Authorization", "value": f"Bearer {SECRETS[0]}"},
                    {"name": "X-Deploy-Key", "value": SECRETS[1], "secret": True},
                    {"name": "X-Plain", "value": "visible"},
                ],
            }
        ],
        "max_attempts": 5,
        "cooldown": 0,
    }
    async with running_guard(settings) as guard:
        admin = await guard.headers("admin")
        created = await guard.client.post(
            "/api/v1/components", headers=admin, json={"name": "etl", "recovery": recovery}
        )
        assert created.status_code == 201, created.text
        _assert_no_secret(created.text)
        for role in ("viewer", "operator", "admin"):
            headers = await guard.headers(role)
            one = await guard.client.get("/api/v1/components/etl", headers=headers)
            listed = await guard.client.get("/api/v1/components", headers=headers)
            assert one.status_code == listed.status_code == 200
            _assert_no_secret(one.text)
            _assert_no_secret(listed.text)
            assert "value_encrypted" not in one.text
        shown = one.json()["recovery"]
        params = shown["strategies"][0]["params"]
        assert params["url"] == f"http://127.0.0.1:{port}/rerun?stage=etl&token={MASK}"
        assert params["headers"] == [
            {"name": "Authorization", "value": MASK, "secret": True},
            {"name": "X-Deploy-Key", "value": MASK, "secret": True},
            {"name": "X-Plain", "value": "visible"},
        ]
        async with guard.session() as session:
            row = (
                await session.execute(text("SELECT recovery FROM components WHERE name = 'etl'"))
            ).scalar_one()
        stored = row if isinstance(row, str) else json.dumps(row)
        assert SECRETS[0] not in stored and SECRETS[1] not in stored

        # PATCH back what was read (masks included): the stored secrets stay.
        patched = await guard.client.patch(
            "/api/v1/components/etl", headers=admin, json={"recovery": {**shown, "max_attempts": 6}}
        )
        assert patched.status_code == 200, patched.text
        _assert_no_secret(patched.text)

        # The mask never follows the webhook to another host.
        moved = json.loads(json.dumps(shown).replace("127.0.0.1", "localhost"))
        refused = await guard.client.patch("/api/v1/components/etl", headers=admin, json={"recovery": moved})
        assert refused.status_code == 422, refused.text
        _assert_no_secret(refused.text)

        heal = await guard.client.post("/api/v1/healing/etl", headers=await guard.headers("operator"))
        assert heal.status_code in (200, 201, 202), heal.text
        await wait_until(lambda: seen)

        # What the receiver answered is shown with the attempt: its echo of the credentials is masked.
        async def settled():
            page = await guard.client.get("/api/v1/healing/attempts", headers=await guard.headers("viewer"))
            items = [a for a in page.json()["items"] if a.get("output")]
            return items or None

        await wait_until(settled)
        for role in ("viewer", "operator", "admin"):
            attempts = await guard.client.get("/api/v1/healing/attempts", headers=await guard.headers(role))
            assert attempts.status_code == 200
            _assert_no_secret(attempts.text)
            for item in attempts.json()["items"]:
                one = await guard.client.get(
                    f"/api/v1/healing/attempts/{item['id']}", headers=await guard.headers(role)
                )
                _assert_no_secret(one.text)
        assert "X-Plain=visible" in attempts.text  # the rest of the answer is kept
    assert seen[-1] == {"auth": f"Bearer {SECRETS[0]}", "key": SECRETS[1], "token": SECRETS[2]}


async def test_a_declared_secret_header_does_not_rewrite_its_component_on_every_start(db_url, tmp_path):
    """Encrypting a secret gives a new ciphertext each time: the config sync compares what the
    secrets say, so an unchanged file leaves the component (and its version) alone."""
    from sqlalchemy import select

    from app.db.models import Component
    from app.monitoring.declarative import sync_declared_components

    declared = [
        {
            "name": "etl",
            "recovery": {
                "strategies": [
                    {
                        "kind": "webhook",
                        "url": "http://127.0.0.1:9/rerun",
                        "headers": [{"name": "X-Deploy-Key", "value": SECRETS[1], "secret": True}],
                    }
                ]
            },
        }
    ]
    settings = make_settings(
        db_url, tmp_path, components=declared, security={"ssrf_allowlist": ["127.0.0.1/32"]}
    )
    async with running_guard(settings, build_services=lambda rt: []) as guard:
        rt = guard.runtime

        async def stored():
            async with guard.session() as session:
                row = (
                    (await session.execute(select(Component).where(Component.name == "etl")))
                    .unique()
                    .scalar_one()
                )
                return row.version, json.dumps(row.recovery)

        await sync_declared_components(rt.core, rt.secret_box, rt.healing.registry)
        first = await stored()
        report = await sync_declared_components(rt.core, rt.secret_box, rt.healing.registry)
        assert report["updated"] == [] and await stored() == first
        assert SECRETS[1] not in first[1]
