"""Date-time query parameters (metric ranges, healing attempts since, audit since/until) need an
offset and an instant the calendar holds, or they are a 422 naming the parameter.

A bare date (``2026-01-01``), a time without an offset, or an offset at the calendar's ends
(``0001-01-01T00:00:00+14:00`` is in year 0 in UTC) reached the UTC columns or the range arithmetic
and came back as a 500 on every one of these routes, as any viewer could ask."""

from __future__ import annotations

from urllib.parse import quote

from app.auth.permissions import Role

ROUTES = [
    ("/api/v1/metrics?component=etl&metric_name=rows&start_time={d}", "query.start_time"),
    ("/api/v1/metrics?component=etl&metric_name=rows&end_time={d}", "query.end_time"),
    ("/api/v1/metrics/summary?component=etl&metric_name=rows&start={d}", "query.start"),
    ("/api/v1/metrics/summary?component=etl&metric_name=rows&end={d}", "query.end"),
    ("/api/v1/healing/attempts?since={d}", "query.since"),
    ("/api/v1/audit?since={d}", "query.since"),
    ("/api/v1/audit?until={d}", "query.until"),
]
REFUSED = ["2026-01-01", "2026-01-01T00:00:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]
ACCEPTED = ["2026-01-01T00:00:00Z", "2026-01-01T02:00:00+02:00", "0001-01-01T00:00:00Z"]


async def test_dates_without_an_offset_or_out_of_range_are_a_422(guard):
    headers = await guard.headers(Role.ADMIN)
    for route, field in ROUTES:
        for text in REFUSED:
            response = await guard.client.get(route.format(d=quote(text)), headers=headers)
            assert response.status_code == 422, (route, text, response.text)
            error = response.json()["error"]
            assert error["type"] == "validation_error"
            assert [f["field"] for f in error["details"]["fields"]] == [field], (route, text)
        for text in ACCEPTED:
            response = await guard.client.get(route.format(d=quote(text)), headers=headers)
            # 400: a summary's end before its default start; the date itself was read
            assert response.status_code in (200, 400, 404), (route, text, response.text)
