"""A silence mutes notifications and pauses healing for what it matches, so its reach is bounded.

``ends_at: 9999-12-31`` was accepted: an operator (or a stolen operator token) could switch healing
off for good with one call that looks like a maintenance window. A one-off silence now lasts at
most 31 days from its start (or from now, when it started already) and starts within 366 days of
now; a recurring window keeps its open-ended recurrence (each window is at most 31 days). A start
in year 1 on a recurring window was a 500 (the next window's arithmetic overflowed), and so was an
end whose offset puts it past year 9999 in UTC, on a silence or an acknowledgement's snooze."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.alerts.service import AlertService
from app.auth.permissions import Role


def _at(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


def _refused() -> list[tuple[dict[str, str], str]]:
    return [
        ({"ends_at": "9999-12-31T00:00:00Z"}, "ends_at"),
        ({"ends_at": _at(timedelta(days=31, hours=1))}, "ends_at"),
        ({"starts_at": _at(timedelta(days=1)), "ends_at": _at(timedelta(days=33))}, "ends_at"),
        ({"starts_at": "0001-01-01T00:00:00Z", "ends_at": _at(timedelta(hours=1))}, "starts_at"),
        ({"starts_at": "9999-12-31T23:00:00Z", "duration": "2h"}, "starts_at"),
        ({"starts_at": "0001-01-01T00:00:00Z", "schedule": "0 2 * * 0", "duration": "1h"}, "starts_at"),
        ({"starts_at": _at(timedelta(days=400)), "schedule": "0 2 * * 0", "duration": "1h"}, "starts_at"),
        # year 10000 in UTC: was a 500 when stored
        ({"schedule": "0 2 * * 0", "duration": "1h", "ends_at": "9999-12-31T23:59:59-14:00"}, "ends_at"),
        ({"ends_at": "2026-12-31T00:00:00"}, "ends_at"),  # no offset
    ]


async def test_a_silence_beyond_its_bounds_is_refused(guard):
    headers = await guard.headers(Role.OPERATOR)
    for body, field in _refused():
        response = await guard.client.post("/api/v1/silences", json=body, headers=headers)
        assert response.status_code == 422, (body, response.text)
        error = response.json()["error"]
        assert error["type"] == "validation_error"
        assert [f["field"].removeprefix("body.") for f in error["details"]["fields"]] == [field], body
    listed = await guard.client.get("/api/v1/silences?include_expired=true", headers=headers)
    assert listed.json()["total"] == 0  # nothing was stored


async def test_silences_within_the_bounds_are_kept(guard):
    headers = await guard.headers(Role.OPERATOR)
    accepted = [
        {"ends_at": _at(timedelta(days=30, hours=23))},
        {"starts_at": _at(timedelta(days=-2)), "ends_at": _at(timedelta(days=30))},  # 30 days from now
        {"starts_at": _at(timedelta(days=365)), "duration": "31d"},
        {"schedule": "0 2 * * 0", "duration": "2h"},  # recurring: open-ended (forever)
        {"schedule": "0 2 * * 0", "duration": "2h", "ends_at": "9999-12-31T23:59:59Z"},
    ]
    for body in accepted:
        response = await guard.client.post("/api/v1/silences", json=body, headers=headers)
        assert response.status_code == 201, (body, response.text)


async def test_a_snooze_past_the_calendar_is_a_422(guard):
    async with guard.session() as session:
        raised = await AlertService(session, guard.runtime.settings).raise_alert(
            component="etl", severity="critical", message="etl is down", fingerprint="health:etl"
        )
        alert_id = raised.alert.id
    headers = await guard.headers(Role.OPERATOR)
    ack = f"/api/v1/alerts/{alert_id}/ack"
    refused = await guard.client.post(ack, json={"until": "9999-12-31T23:59:59-14:00"}, headers=headers)
    assert refused.status_code == 422, refused.text
    assert [f["field"] for f in refused.json()["error"]["details"]["fields"]] == ["body.until"]
    assert (await guard.client.get(f"/api/v1/alerts/{alert_id}", headers=headers)).json()[
        "status"
    ] == "firing"
    snoozed = await guard.client.post(ack, json={"until": _at(timedelta(hours=2))}, headers=headers)
    assert snoozed.status_code == 200, snoozed.text
