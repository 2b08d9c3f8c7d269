"""Names checked with a pattern are checked whole: Python's ``re.match(r"^...$")`` lets one trailing
newline through (``$`` matches before it), so ``BASH_ENV\\n`` passed as a restart command's variable
name (the refusal list compares exact names) and ``team\\n`` as a label key. Each is a 422 now."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("name", ["BASH_ENV\n", "LD_PRELOAD\n", "TOKEN\n"])
async def test_a_restart_env_name_with_a_trailing_newline_is_refused(guard, name):
    admin = await guard.headers("admin")
    recovery = {"strategies": [{"kind": "restart", "argv": ["/bin/true"], "env": {name: "/tmp/x"}}]}
    response = await guard.client.post(
        "/api/v1/components",
        headers=admin,
        json={"name": "etl", "check": {"kind": "heartbeat", "period": 60}, "recovery": recovery},
    )
    assert response.status_code == 422, response.text
    assert (await guard.client.get("/api/v1/components", headers=admin)).json()["total"] == 0


async def test_a_label_key_with_a_trailing_newline_is_refused(guard):
    admin = await guard.headers("admin")
    response = await guard.client.post(
        "/api/v1/components",
        headers=admin,
        json={"name": "etl", "labels": {"team\n": "data"}, "check": {"kind": "heartbeat", "period": 60}},
    )
    assert response.status_code == 422, response.text
    assert (await guard.client.get("/api/v1/components", headers=admin)).json()["total"] == 0


async def test_plain_names_still_pass(guard):
    admin = await guard.headers("admin")
    recovery = {"strategies": [{"kind": "restart", "argv": ["/bin/true"], "env": {"TOKEN": "x", "_A1": "y"}}]}
    response = await guard.client.post(
        "/api/v1/components",
        headers=admin,
        json={
            "name": "etl",
            "labels": {"team": "data", "app.kubernetes.io/name": "etl"},
            "check": {"kind": "heartbeat", "period": 60},
            "recovery": recovery,
        },
    )
    assert response.status_code == 201, response.text
