"""A silence mutes notifications and pauses healing for what it matches, so its reach is bounded.

``ends_at: 9999-12-31`` was accepted: an operator (or a stolen operator token) could switch healing
off for good with one call that looks like a maintenance window. A one-off silence now lasts at
most 31 days from its start (or from now, when it started already) and starts within 366 days of
now; a recurring window keeps its open-ended recurrence (each window is at most 31 days). A start
in year 1 on a recurring window was a 500 (the next window's arithmetic overflowed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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
    ]


async def test_a_silence_beyond_its_bounds_is_refused(guard):
    headers = await guard.headers(Role.OPERATOR)
    for body, field in _refused():
        response = await guard.client.post("/api/v1/silences", json=body, headers=headers)
        assert response.status_code == 422, (body, response.text)
        error = response.json()["error"]
        assert error["type"] == "validation_error"
        assert [f["field"] for f in error["details"]["fields"]] == [field], body
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
