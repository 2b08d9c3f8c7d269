"""Durations that JSON or YAML can spell but no clock can use (NaN, Infinity, 1e20 s, 99999999d) are a
422 in the error envelope and change nothing, wherever a duration is read: a check's interval, a
heartbeat's period, a recovery policy's back-off, a silence, a rule's ``for``, the settings.

A NaN interval used to be stored: the scheduler's timetable then held a NaN due time, which is
never "due" and sorts nowhere, and every other component stopped being probed.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.config.sections import MAX_DURATION_S, parse_duration
from tests.conftest import make_settings

URL = "http://127.0.0.1:9/health"
ABSURD = ["NaN", "Infinity", "-Infinity", "1e20", "1e308", '"99999999d"', str(10**40)]


def _assert_envelope(response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"type", "message", "details", "timestamp"}
    return error


async def _post_raw(guard, path: str, body: str, role: str = "admin"):
    headers = {**await guard.headers(role), "Content-Type": "application/json"}
    return await guard.client.post(path, headers=headers, content=body)


def _documents(value: str) -> list[tuple[str, str]]:
    check = f'{{"kind": "http", "url": "{URL}", "interval": {value}}}'
    return [
        ("check.interval", f'{{"name": "bad-interval", "check": {check}}}'),
        (
            "check.timeout",
            f'{{"name": "bad-timeout", "check": {{"kind": "tcp", "host": "127.0.0.1", '
            f'"port": 9, "timeout": {value}}}}}',
        ),
        ("check.period", f'{{"name": "bad-period", "check": {{"kind": "heartbeat", "period": {value}}}}}'),
        (
            "check.grace",
            f'{{"name": "bad-grace", "check": {{"kind": "heartbeat", "period": 60, "grace": {value}}}}}',
        ),
        (
            "recovery.backoff_initial",
            '{"name": "bad-backoff", "check": {"kind": "heartbeat", "period": 60}, "recovery": '
            f'{{"strategies": [{{"kind": "notify_only", "message": "x"}}], "backoff_initial": {value}}}}}',
        ),
        (
            "recovery.cooldown",
            '{"name": "bad-cooldown", "check": {"kind": "heartbeat", "period": 60}, "recovery": '
            f'{{"strategies": [{{"kind": "notify_only", "message": "x"}}], "cooldown": {value}}}}}',
        ),
    ]


@pytest.mark.parametrize("value", ABSURD)
async def test_absurd_durations_in_components_are_refused_and_change_nothing(guard, value):
    admin = await guard.headers("admin")
    ok = await guard.client.post(
        "/api/v1/components", headers=admin, json={"name": "web", "check": {"kind": "http", "url": URL}}
    )
    assert ok.status_code == 201, ok.text
    before = (await guard.client.get("/api/v1/components/web", headers=admin)).json()
    for field, body in _documents(value):
        error = _assert_envelope(await _post_raw(guard, "/api/v1/components", body), 422)
        assert field.split(".")[0] in str(error["details"]), (field, error)
        # The same value through PATCH of an existing component.
        patch = body.replace('"name": "bad-', '"description": "bad-')
        error = _assert_envelope(
            await guard.client.patch(
                "/api/v1/components/web",
                headers={**admin, "Content-Type": "application/json"},
                content=patch,
            ),
            422,
        )
    listed = (await guard.client.get("/api/v1/components", headers=admin)).json()
    assert [c["name"] for c in listed["items"]] == ["web"]
    after = (await guard.client.get("/api/v1/components/web", headers=admin)).json()
    assert after["check"] == before["check"] and after["recovery"] == before["recovery"]
    assert after["version"] == before["version"]


@pytest.mark.parametrize("value", ["NaN", "Infinity", "1e20", '"99999999d"'])
async def test_absurd_durations_elsewhere_are_refused(guard, value):
    admin = await guard.headers("admin")
    created = await guard.client.post(
        "/api/v1/components",
        headers=admin,
        json={"name": "etl", "check": {"kind": "heartbeat", "period": 60}},
    )
    assert created.status_code == 201, created.text
    _assert_envelope(
        await _post_raw(
            guard, "/api/v1/silences", f'{{"component": "etl", "duration": {value}}}', "operator"
        ),
        422,
    )
    _assert_envelope(
        await _post_raw(
            guard,
            "/api/v1/rules",
            '{"name": "fresh", "component": "etl", "metric_name": "rows", "kind": "absent", '
            f'"params": {{"for": {value}}}}}',
        ),
        422,
    )
    _assert_envelope(
        await _post_raw(guard, "/api/v1/components/etl/maintenance", f'{{"duration": {value}}}', "operator"),
        422,
    )
    operator = await guard.headers("operator")
    assert (await guard.client.get("/api/v1/silences", headers=operator)).json()["items"] == []
    assert (await guard.client.get("/api/v1/rules", headers=admin)).json() == []


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e20, "99999999d"])
def test_settings_refuse_absurd_durations(db_url, tmp_path, value):
    with pytest.raises(ValidationError):
        make_settings(db_url, tmp_path, pipeline={"monitoring": {"interval": value}})


def test_durations_up_to_the_bound_still_parse():
    assert parse_duration("3650d") == 3650 * 86400
    assert parse_duration(MAX_DURATION_S) == MAX_DURATION_S
    assert parse_duration("500ms") == 0.5
    with pytest.raises(ValueError, match="finite duration"):
        parse_duration(MAX_DURATION_S * 1.01)
