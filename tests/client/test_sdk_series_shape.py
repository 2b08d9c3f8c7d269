"""The SDK sends its batches in the series shape (points grouped per series) to a real guard, which
stores exactly the points recorded; a guard from before the series shape gets the same points as
points."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from live_guard import envelope

from app.client import AsyncGuardClient, GuardClient

BATCH = "/api/v1/metrics/batch"
# What a guard from before the series shape answers to ``{"series": [...]}``.
OLD_GUARD = (
    422,
    envelope(
        "validation_error",
        "the batch object takes only 'points'",
        {"fields": [{"field": "series", "message": "unknown field"}]},
    ),
)


def recorded_points(start: datetime) -> list[tuple[str, str, float, dict[str, str], datetime]]:
    """Interleaved points of three series (one without labels), as a pipeline records them."""
    points = []
    for i in range(12):
        labels = [{"stage": "load"}, {"stage": "clean", "host": "h1"}, {}][i % 3]
        name = "rows" if i % 3 < 2 else "lag_seconds"
        points.append(("etl", name, float(i) / 4, labels, start + timedelta(seconds=i, microseconds=7)))
    return points


def stored(items: list[dict]) -> list[tuple]:
    return sorted(
        (p["component"], p["metric_name"], p["value"], sorted(p["labels"].items()), p["timestamp"])
        for p in items
    )


def expected(points) -> list[tuple]:
    return sorted(
        (c, m, v, sorted(lab.items()), ts.isoformat().replace("+00:00", "Z")) for c, m, v, lab, ts in points
    )


def test_sync_client_sends_series_and_the_guard_stores_every_point(stub):
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    points = recorded_points(start)
    with GuardClient(stub.url, stub.token, batch_size=100, flush_interval=0, raise_errors=True) as guard:
        for c, m, v, labels, ts in points:
            guard.record_metric(c, m, v, labels=labels, timestamp=ts)
        assert guard.flush() == 12
        [call] = stub.calls("POST", BATCH)
        assert "points" not in call.body
        assert [(e["metric_name"], e["labels"], len(e["values"])) for e in call.body["series"]] == [
            ("rows", {"stage": "load"}, 4),
            ("rows", {"stage": "clean", "host": "h1"}, 4),
            ("lag_seconds", {}, 4),
        ]
        page = guard.get_metrics(component="etl", limit=100)
        assert stored(page["items"]) == expected(points)
        latest = {
            (s["metric_name"], tuple(sorted(s["labels"].items()))): s["value"]
            for s in guard.get_latest_metrics("etl")
        }
        assert latest == {
            ("rows", (("stage", "load"),)): 2.25,
            ("rows", (("host", "h1"), ("stage", "clean"))): 2.5,
            ("lag_seconds", ()): 2.75,
        }


def test_sync_client_falls_back_to_points_for_a_guard_without_the_series_shape(stub):
    stub.script("POST", BATCH, OLD_GUARD)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    points = recorded_points(start)
    with GuardClient(stub.url, stub.token, batch_size=6, flush_interval=0, raise_errors=True) as guard:
        assert guard.record_batch([(c, m, v, lab, ts) for c, m, v, lab, ts in points]) == 12
        shapes = [next(iter(call.body)) for call in stub.calls("POST", BATCH)]
        assert shapes == ["series", "points", "points"]  # refused once, then points from then on
        assert stored(guard.get_metrics(component="etl", limit=100)["items"]) == expected(points)


async def test_async_client_sends_series(stub):
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    points = recorded_points(start)
    async with AsyncGuardClient(
        stub.url, stub.token, batch_size=5, flush_interval=0, raise_errors=True
    ) as guard:
        assert await guard.record_batch([(c, m, v, lab, ts.timestamp()) for c, m, v, lab, ts in points]) == 12
        assert all("series" in call.body for call in stub.calls("POST", BATCH))
        assert stored((await guard.get_metrics(component="etl", limit=100))["items"]) == expected(points)
