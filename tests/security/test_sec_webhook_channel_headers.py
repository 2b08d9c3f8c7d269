"""A webhook channel's extra headers are checked when the channel is written: a name must be an HTTP
token (RFC 9110: ASCII letters, digits and ``!#$%&'*+-.^_`|~``), a value a single line without
control characters. A value with CR/LF or NUL, or a name like ``Ä``, used to be stored (201); every
notification through the channel then failed at send time (aiohttp refuses the line break, a
receiver the NUL), far from the request that caused it. Valid headers still reach a real receiver."""

from __future__ import annotations

import pytest

from tests.conftest import make_settings, running_guard

BAD_HEADERS = [
    {"X-Team": "ops\r\nX-Injected: 1"},
    {"X-Team": "ops\n"},
    {"X-Team": "ops\x00"},
    {"X-Team": "ops\x1b[31m"},
    {"X-Team": "ops\x7f"},
    {"Ä": "ops"},
    {"X-١": "ops"},
    {"X-Team ": "ops"},
]


@pytest.fixture
async def notify_guard(db_url, tmp_path):
    settings = make_settings(db_url, tmp_path, security={"ssrf_allowlist": ["127.0.0.1/32"]})
    async with running_guard(settings) as guard:
        yield guard


async def _channels(guard, admin):
    return (await guard.client.get("/api/v1/channels", headers=admin)).json()["total"]


@pytest.mark.parametrize("headers", BAD_HEADERS, ids=repr)
async def test_a_bad_header_is_a_422_when_the_channel_is_written(notify_guard, receiver, headers):
    guard = notify_guard
    admin = await guard.headers("admin")
    created = await guard.client.post(
        "/api/v1/channels",
        headers=admin,
        json={
            "name": "hook",
            "kind": "webhook",
            "config": {"url": receiver.url + "/hook", "headers": headers},
        },
    )
    assert created.status_code == 422, created.text
    error = created.json()["error"]
    assert error["type"] == "validation_error"
    assert [f["field"] for f in error["details"]["fields"]] == ["config.headers"]
    assert "ops" not in created.text  # a header value may be a secret: never echoed
    assert await _channels(guard, admin) == 0

    good = await guard.client.post(
        "/api/v1/channels",
        headers=admin,
        json={"name": "hook", "kind": "webhook", "config": {"url": receiver.url + "/hook"}},
    )
    assert good.status_code == 201, good.text
    patched = await guard.client.patch(
        f"/api/v1/channels/{good.json()['id']}",
        headers=admin,
        json={"config": {"url": receiver.url + "/hook", "headers": headers}},
    )
    assert patched.status_code == 422, patched.text
    stored = (await guard.client.get(f"/api/v1/channels/{good.json()['id']}", headers=admin)).json()
    assert "headers" not in stored["config"]


async def test_valid_headers_reach_the_receiver(notify_guard, receiver):
    guard = notify_guard
    admin = await guard.headers("admin")
    headers = {
        "X-Team": "data ops\tEU",
        "Authorization": "Bearer abc.DEF-123",
        "X-Note": "café",
        "X_Trace.Id": "t-1",  # an RFC 9110 token: underscores and dots are allowed
    }
    created = await guard.client.post(
        "/api/v1/channels",
        headers=admin,
        json={
            "name": "hook",
            "kind": "webhook",
            "config": {"url": receiver.url + "/hook", "headers": headers},
        },
    )
    assert created.status_code == 201, created.text
    sent = await guard.client.post(f"/api/v1/channels/{created.json()['id']}/test", headers=admin)
    assert sent.status_code == 200 and sent.json()["delivered"], sent.text
    got = receiver.requests[-1]["headers"]
    assert got["X-Team"] == "data ops\tEU"
    assert got["Authorization"] == "Bearer abc.DEF-123"
    assert got["X_Trace.Id"] == "t-1"


async def test_url_credentials_and_an_authorization_header_are_refused_together(notify_guard, receiver):
    """aiohttp refuses to send both (every notification failed); either alone is fine."""
    guard = notify_guard
    admin = await guard.headers("admin")
    url = receiver.url.replace("http://", "http://hook:s3cret@") + "/hook"
    created = await guard.client.post(
        "/api/v1/channels",
        headers=admin,
        json={
            "name": "hook",
            "kind": "webhook",
            "config": {"url": url, "headers": {"authorization": "Bearer x"}},
        },
    )
    assert created.status_code == 422, created.text
    assert [f["field"] for f in created.json()["error"]["details"]["fields"]] == ["config.headers"]
    assert "s3cret" not in created.text
    assert await _channels(guard, admin) == 0
    alone = await guard.client.post(
        "/api/v1/channels", headers=admin, json={"name": "hook", "kind": "webhook", "config": {"url": url}}
    )
    assert alone.status_code == 201, alone.text
    sent = await guard.client.post(f"/api/v1/channels/{alone.json()['id']}/test", headers=admin)
    assert sent.json()["delivered"], sent.text
    assert receiver.requests[-1]["headers"]["Authorization"].startswith("Basic ")
