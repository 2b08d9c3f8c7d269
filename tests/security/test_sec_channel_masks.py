"""A channel's secrets survive a client that PATCHes back what it read: the masked URL, HMAC
secret and header values stand for the stored ones (they used to replace them: the webhook then
went to ``https://host/********`` with ``Authorization: ********``), but only while the channel
keeps its receiver: a mask never sends a stored secret to another host. Checked against a real
loopback receiver through the channel's test send."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from aiohttp import web

from app.security.crypto import MASK
from tests.conftest import make_settings, running_guard
from tests.support.loopback import serve_app

SECRET = "s3cr3t-hmac-0123456789"
BEARER = "Bearer s3cr3t-BEARER"


@pytest.fixture
async def receiver():
    seen: list[dict] = []

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        seen.append({"path": request.path_qs, "auth": request.headers.get("Authorization")})
        ok = (
            request.path_qs == "/hook/T0?token=abc"
            and request.headers.get("Authorization") == BEARER
            and request.headers.get("X-Pipeline-Guard-Signature") == signature
        )
        return web.Response(status=200 if ok else 401)

    app = web.Application()
    app.router.add_post("/hook/{rest}", handler)
    async with serve_app(app) as port:
        yield port, seen


async def test_masks_sent_back_keep_the_stored_secrets_on_the_same_receiver(db_url, tmp_path, receiver):
    port, seen = receiver
    settings = make_settings(db_url, tmp_path, security={"ssrf_allowlist": ["127.0.0.1/32"]})
    async with running_guard(settings) as guard:
        admin = await guard.headers("admin")
        config = {
            "url": f"http://127.0.0.1:{port}/hook/T0?token=abc",
            "secret": SECRET,
            "headers": {"Authorization": BEARER},
        }
        created = await guard.client.post(
            "/api/v1/channels", headers=admin, json={"name": "hook", "kind": "webhook", "config": config}
        )
        assert created.status_code == 201, created.text
        channel = created.json()
        shown = channel["config"]
        assert shown == {
            "url": f"http://127.0.0.1:{port}/{MASK}",
            "secret": MASK,
            "headers": {"Authorization": MASK},
        }

        patched = await guard.client.patch(
            f"/api/v1/channels/{channel['id']}", headers=admin, json={"config": shown, "language": "de"}
        )
        assert patched.status_code == 200, patched.text
        test = await guard.client.post(f"/api/v1/channels/{channel['id']}/test", headers=admin)
        assert test.json()["delivered"] is True, (test.text, seen)

        # Another receiver with the stored secrets: refused, nothing changed.
        for moved in (
            {**shown, "url": f"http://localhost:{port}/hook/T0?token=abc"},
            {"url": f"http://localhost:{port}/{MASK}"},
        ):
            refused = await guard.client.patch(
                f"/api/v1/channels/{channel['id']}", headers=admin, json={"config": moved}
            )
            assert refused.status_code == 422, refused.text
            assert set(refused.json()["error"]) == {"type", "message", "details", "timestamp"}
        test = await guard.client.post(f"/api/v1/channels/{channel['id']}/test", headers=admin)
        assert test.json()["delivered"] is True, (test.text, seen)
        assert all(s["auth"] == BEARER for s in seen)
