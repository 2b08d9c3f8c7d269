"""A ping token is a credential: a caller who sends a wrong one learns nothing, not even whether the
component it names exists. The heartbeat and maintenance routes looked the component up before
checking the token, so anyone could tell existing names (401) from unknown ones (404) without
logging in, which the private status page (``status_page_public: false``) is meant to hide."""

from __future__ import annotations

import pytest

ROUTES = [
    ("/api/v1/components/{name}/heartbeat", {"status": "success"}),
    ("/api/v1/components/{name}/maintenance", {"duration": "5m"}),
]


@pytest.mark.parametrize(("route", "body"), ROUTES)
async def test_a_wrong_ping_token_gets_the_same_answer_for_known_and_unknown_names(guard, route, body):
    admin = await guard.headers("admin")
    created = await guard.client.post(
        "/api/v1/components",
        headers=admin,
        json={"name": "etl", "check": {"kind": "heartbeat", "period": 60}},
    )
    assert created.status_code == 201, created.text
    token = (await guard.client.post("/api/v1/components/etl/ping-token", headers=admin)).json()["token"]

    answers = []
    for name in ("etl", "no-such-component"):
        response = await guard.client.post(
            route.format(name=name), headers={"X-Ping-Token": token + "x"}, json=body
        )
        error = response.json()["error"]
        answers.append((response.status_code, error["type"], error["message"], error["details"]))
    assert answers[0] == answers[1]
    assert answers[0][0] == 401

    # The right token of one component opens nothing of another, known or not.
    other = await guard.client.post(
        route.format(name="no-such-component"), headers={"X-Ping-Token": token}, json=body
    )
    assert other.status_code == 401, other.text
    own = await guard.client.post(route.format(name="etl"), headers={"X-Ping-Token": token}, json=body)
    assert own.status_code in (200, 201), own.text


async def test_a_user_token_still_gets_404_for_an_unknown_component(guard):
    """With a login the caller may know the fleet: an unknown name stays a 404 there."""
    operator = await guard.headers("operator")
    for route, body in ROUTES:
        response = await guard.client.post(
            route.format(name="no-such-component"), headers=operator, json=body
        )
        assert response.status_code == 404, response.text
