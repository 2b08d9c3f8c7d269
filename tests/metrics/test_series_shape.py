"""The series shape of a batch (``{"series": [...]}``): its fast path (numpy columns) against its
thorough path (the entries expanded into points and checked by ``check_points``, the specification),
its error reports, and the rows stored: identical to the same points sent as points, on both dialects."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from app.core.errors import ValidationFailed
from app.metrics import decode
from app.metrics.decode import check_body, decode_batch
from tests.conftest import make_settings, running_guard
from tests.metrics.test_decode import outcome

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
T0 = NOW.timestamp()


def thorough(body: bytes) -> Any:
    return check_body(orjson.loads(body), now=NOW)


def same(body: bytes) -> Any:
    fast = outcome(decode_batch, body, now=NOW)
    assert fast == outcome(thorough, body)
    return fast


def entry(**over: Any) -> dict[str, Any]:
    return {
        "component": "etl",
        "metric_name": "rows",
        "labels": {"stage": "load"},
        "timestamps": [T0 - 60, T0 - 30.5, "2026-11-23T11:59:45Z"],
        "values": [1, 2.5, -0.0],
        **over,
    }


def as_points(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same points in the point format, in the same order."""
    return [
        {**{k: e[k] for k in ("component", "metric_name", "labels") if k in e}, "value": v, "timestamp": t}
        for e in entries
        for v, t in zip(e["values"], e["timestamps"], strict=True)
    ]


def test_good_series_take_the_fast_path_and_equal_the_same_points(monkeypatch):
    entries = [entry(), entry(labels={"b": "2", "a": "1"}), entry(labels=None, metric_name="lag")]
    body = orjson.dumps({"series": entries})
    expected = outcome(decode_batch, orjson.dumps({"points": as_points(entries)}), now=NOW)
    assert expected[0] == "accepted"
    monkeypatch.setattr(decode, "check_series", lambda *a, **k: pytest.fail("the fast path declined"))
    batch = decode_batch(body, now=NOW)
    assert batch._stamps is None  # born columnar: no per-point Python objects
    assert outcome(decode_batch, body, now=NOW) == expected
    assert batch.entries == [(0, 3), (1, 3), (2, 3)]


def test_every_bad_point_is_named_by_series_index_and_field():
    entries = [
        entry(),
        entry(values=[1, "x", 3], timestamps=[T0, T0 + 3600, None]),
        entry(component="a b", metric_name="9x"),
        entry(labels={"bad-key": "v"}, values=[1e151, 2, 3]),
        entry(timestamps=[T0]),
        "nope",
        entry(extra=1, values=[]),
    ]
    kind, message, details = same(orjson.dumps({"series": entries}))
    assert kind == "rejected"
    assert {(e["series"], e.get("index"), e["field"]) for e in details["errors"]} == {
        (1, 1, "values"),
        (1, 1, "timestamps"),
        (1, 2, "timestamps"),
        (2, None, "component"),
        (2, None, "metric_name"),
        (3, None, "labels"),
        (3, 0, "values"),
        (4, None, "timestamps"),
        (5, None, "series"),
        (6, None, "series"),
        (6, None, "values"),
        (6, None, "timestamps"),
    }
    # Every point of entries 1-3 is counted (an entry's bad identity makes all its points bad),
    # and entry 4's three values (its timestamps do not match them).
    assert details["invalid_points"] == 2 + 3 + 3 + 3
    assert details["total_points"] == 15
    assert message.startswith("11 of 15 points are invalid")


def test_limits_count_points_not_series():
    big = entry(values=[1.0] * 5_000, timestamps=[T0] * 5_000)
    assert same(orjson.dumps({"series": [big, big]}))[0] == "accepted"
    kind, message, _ = same(orjson.dumps({"series": [big, big, entry()]}))
    assert kind == "rejected" and message == "at most 10000 points per batch"
    assert same(orjson.dumps({"series": []}))[1] == "the batch is empty"


def test_bodies_of_neither_or_both_shapes():
    for body in (
        {"series": 3},
        {"series": None},
        {"series": [entry()], "points": as_points([entry()])},
        {"series": [entry()], "x": 1},
    ):
        assert same(orjson.dumps(body))[0] == "rejected"


def test_epoch_seconds_round_as_datetime_fromtimestamp():
    """Fractions that fall on half a microsecond, or next to it, in binary."""
    base = int(T0) - 100
    times = [base + f for f in (0.0000005, 0.0000015, 0.0000025, 0.4999995, 0.9999995, 0.9999999, 1e-7)]
    times += [base + i / 7 for i in range(20)] + [float(base)]
    body = orjson.dumps({"series": [entry(timestamps=times, values=[1.0] * len(times))]})
    kind, rows, *_ = same(body)
    assert kind == "accepted"
    assert [r[2] for r in rows] == [datetime.fromtimestamp(t, UTC) for t in times]
    points = outcome(decode_batch, orjson.dumps({"points": as_points(orjson.loads(body)["series"])}), now=NOW)
    assert outcome(decode_batch, body, now=NOW) == points


_time = st.one_of(
    st.floats(T0 - 366 * 86400 - 5, T0 + 305),
    st.integers(int(T0) - 4000, int(T0) + 400),
    st.sampled_from(["2026-11-23T11:59:00Z", "2026-11-23T12:58:00+01:00", "2026-11-23 11:57", "soon"]),
    st.none(),
    st.booleans(),
)
_value = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**63), 2**63), st.just("1"), st.none()
)
_labels = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from(["a", "b", "bad-k"]), st.sampled_from(["1", "é", ""]), max_size=2),
)


@st.composite
def _entry(draw) -> dict[str, Any]:
    n = draw(st.integers(0, 6))
    e: dict[str, Any] = {
        "component": draw(st.sampled_from(["etl", "load", "a b", ""])),
        "metric_name": draw(st.sampled_from(["rows", "x:y", "9"])),
        "timestamps": draw(st.lists(_time, min_size=n, max_size=n + draw(st.sampled_from([0, 0, 0, 1])))),
        "values": draw(st.lists(_value, min_size=n, max_size=n)),
    }
    if draw(st.booleans()):
        e["labels"] = draw(_labels)
    if draw(st.integers(0, 9)) == 0:
        e["extra"] = 1
    return e


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_entry(), min_size=0, max_size=5))
def test_fast_and_thorough_agree_on_generated_series(entries):
    same(orjson.dumps({"series": entries}))


# --- stored rows: both shapes, both dialects ---------------------------------------------------
_good_entry = st.fixed_dictionaries(
    {
        "component": st.sampled_from(["etl", "load"]),
        "metric_name": st.sampled_from(["rows", "x:y"]),
        "points": st.lists(
            st.tuples(
                st.one_of(st.floats(min_value=-1e150, max_value=1e150), st.integers(-(2**53), 2**53)),
                st.one_of(
                    st.floats(-7200, 200),  # seconds from the start
                    st.integers(-7200 * 10**7, 200 * 10**7).map(lambda n: n / 1e7),  # fractions of a us
                    st.integers(-7200, 200),
                    st.sampled_from([-3600, -61, -60, 0]),
                ),
                st.booleans(),  # sent as ISO 8601 text (whole microseconds) rather than a number
            ),
            min_size=1,
            max_size=8,
        ),
    },
    optional={
        "labels": st.one_of(
            st.none(), st.dictionaries(st.sampled_from(["a", "b"]), st.sampled_from(["1", "é"]))
        )
    },
)

_ROWS = {
    "metric_points": "component, metric_name, series_key, labels, value, ts",
    "metric_rollups": "resolution, component, metric_name, series_key, bucket_start, count, sum, min, max, "
    "sumsq, sketch, compacted",
    "metric_series": "component, metric_name, series_key, labels, last_value, last_ts",
}


def body_of(entries: list[dict[str, Any]], start: float) -> list[dict[str, Any]]:
    out = []
    for e in entries:
        times = []
        for _v, offset, as_text in e["points"]:
            t = start + offset
            times.append(datetime.fromtimestamp(t, UTC).isoformat() if as_text else t)
        out.append(
            {
                **{k: e[k] for k in ("component", "metric_name", "labels") if k in e},
                "timestamps": times,
                "values": [v for v, _o, _t in e["points"]],
            }
        )
    return out


async def test_stored_rows_are_the_same_in_both_shapes(guard):
    """Every table a batch writes (points, rollup deltas, series' latest), read back in full after
    the same points were sent in each shape (rows in a canonical order: the shapes list a batch's
    points in different orders). Hypothesis draws the batches on a thread; the requests run on this
    test's event loop."""
    headers = await guard.headers("ingest")
    loop = asyncio.get_running_loop()
    start = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=0).timestamp()

    async def stored_after(body: dict[str, Any]) -> dict[str, list]:
        r = await guard.client.post("/api/v1/metrics/batch", json=body, headers=headers)
        assert r.status_code == 201, r.text
        rows = {}
        async with guard.session() as s:
            for table, columns in _ROWS.items():
                rows[table] = sorted(
                    map(tuple, await s.execute(text(f"SELECT {columns} FROM {table}"))), key=repr
                )
                await s.execute(text(f"DELETE FROM {table}"))
            await s.commit()
        return rows

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(_good_entry, min_size=1, max_size=4))
    def check(entries):
        series = body_of(entries, start)
        as_series = asyncio.run_coroutine_threadsafe(stored_after({"series": series}), loop).result()
        as_points_ = asyncio.run_coroutine_threadsafe(
            stored_after({"points": as_points(series)}), loop
        ).result()
        assert as_series == as_points_
        assert len(as_series["metric_points"]) == sum(len(e["points"]) for e in entries)

    await asyncio.to_thread(check)


async def test_unknown_components_are_named_by_series(db_url, tmp_path, now):
    settings = make_settings(
        db_url, tmp_path, pipeline={"monitoring": {"allow_unknown_metric_components": False}}
    )
    async with running_guard(settings) as guard:
        headers = await guard.headers("admin")
        r = await guard.client.post("/api/v1/components", json={"name": "known"}, headers=headers)
        assert r.status_code == 201, r.text
        t = now.timestamp()
        body = {
            "series": [
                {"component": "known", "metric_name": "rows", "timestamps": [t], "values": [1]},
                {"component": "ghost", "metric_name": "rows", "timestamps": [t, t], "values": [1, 2]},
            ]
        }
        r = await guard.client.post("/api/v1/metrics/batch", json=body, headers=headers)
        assert r.status_code == 422, r.text
        details = r.json()["error"]["details"]
        assert details["errors"] == [
            {"series": 1, "field": "component", "message": "unknown component 'ghost'"}
        ]
        assert (details["invalid_points"], details["total_points"]) == (2, 3)


def test_a_declined_fast_path_is_not_an_error():
    """Timestamps the numeric decoder refuses go through the mixed decoder, then per distinct text."""
    body = orjson.dumps({"series": [entry(timestamps=["2026-11-23T11:59:00Z"] * 3)]})
    assert same(body)[0] == "accepted"
    with pytest.raises(ValidationFailed):
        decode_batch(orjson.dumps({"series": [entry(timestamps=["2026-11-23T11:59:00Z"] * 2)]}), now=NOW)
