"""The points' binary COPY stream: the fixed-width layout (series' fields padded with spaces after the
labels' JSON text) and the joined layout carry the same rows, and Postgres stores the same labels."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from app.db.models import metric_points
from app.metrics.copy_stream import HEADER, TRAILER, joined_copy_stream, points_copy_stream
from app.metrics.decode import decode_batch
from app.metrics.validation import Batch, check_points

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def rows_of(stream: memoryview) -> list[tuple]:
    """Parse a binary COPY stream of ``POINT_COLUMNS``: (component, metric, key, labels JSON text,
    value, ts) per row, the labels' JSON text as sent (jsonb's version byte checked)."""
    data = bytes(stream)
    assert data.startswith(HEADER) and data.endswith(TRAILER)
    at, end, rows = len(HEADER), len(data) - len(TRAILER), []
    while at < end:
        (count,) = struct.unpack_from(">h", data, at)
        assert count == 6
        at += 2
        fields = []
        for _ in range(count):
            (size,) = struct.unpack_from(">i", data, at)
            fields.append(data[at + 4 : at + 4 + size])
            at += 4 + size
        component, name, key, labels, value, ts = fields
        assert labels[:1] == b"\x01"  # jsonb's binary version
        (micros,) = struct.unpack(">q", ts)
        rows.append(
            (
                component.decode(),
                name.decode(),
                key.decode(),
                labels[1:].decode(),
                struct.unpack(">d", value)[0],
                _PG_EPOCH + timedelta(microseconds=micros),
            )
        )
    assert at == end
    return rows


def batch_of(points: list[tuple[str, str, str, float, int]]):
    return check_points(
        [
            {
                "component": c,
                "metric_name": m,
                "value": v,
                "labels": {"host": h} if h else {},
                "timestamp": (NOW - timedelta(seconds=age)).isoformat(),
            }
            for c, m, h, v, age in points
        ],
        now=NOW,
    )


names = st.text("abcxyz_", min_size=1, max_size=12)
points = st.lists(
    st.tuples(
        st.sampled_from(["etl", "web-1", "a", "warehouse-loader"]),
        names,
        st.text("abcé0123456789-", max_size=30),
        st.floats(min_value=-1e150, max_value=1e150, allow_nan=False, allow_infinity=False),
        st.integers(0, 7200),
    ),
    min_size=1,
    max_size=200,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(points)
def test_both_layouts_carry_the_batch_rows_in_order(pts):
    batch = batch_of(pts)
    fixed, joined = rows_of(points_copy_stream(batch)), rows_of(joined_copy_stream(batch))
    expected = [
        (s.component, s.metric_name, s.series_key, s.labels_json, v, st_.ts)
        for s, v, st_ in zip(
            map(batch.series.__getitem__, batch.sids), batch.values, batch.stamps, strict=True
        )
    ]
    assert joined == expected
    # The fixed layout differs only by spaces after a labels' JSON text, which jsonb skips.
    assert [(*r[:3], r[3].rstrip(" "), *r[4:]) for r in fixed] == expected
    assert all(orjson.loads(r[3]) == orjson.loads(e[3]) for r, e in zip(fixed, expected, strict=True))


def test_an_empty_batch_is_a_header_and_a_trailer():
    assert bytes(points_copy_stream(Batch([], [], [], []))) == HEADER + TRAILER


def test_equal_widths_need_no_padding_and_one_long_outlier_takes_the_joined_layout():
    same = batch_of([("etl", "rows", f"h{i % 10}", float(i), i) for i in range(100)])
    assert bytes(points_copy_stream(same)) == bytes(joined_copy_stream(same))
    outlier = batch_of([("etl", "rows", "h" * (200 if i == 0 else 1), float(i), i) for i in range(100)])
    assert bytes(points_copy_stream(outlier)) == bytes(joined_copy_stream(outlier))  # not padded 100x
    padded = batch_of([("etl", "rows", "h" * (1 + i % 3), float(i), i) for i in range(100)])
    assert len(points_copy_stream(padded)) > len(joined_copy_stream(padded))  # the fixed layout, padded


async def test_padded_labels_are_stored_as_sent(guard, now):
    """Through the API: series whose fields differ in width (the fixed layout pads them on Postgres)
    are stored with exactly their labels and values, point for point."""
    h = await guard.headers("ingest")
    sent = [
        {
            "component": "etl" if i % 2 else "warehouse",
            "metric_name": "rows" if i % 3 else "rows_loaded",
            "value": float(i),
            "labels": {"host": "h" * (1 + i % 4), "zone": "é"} if i % 5 else {},
            "timestamp": (now - timedelta(seconds=i)).isoformat(),
        }
        for i in range(60)
    ]
    padded = decode_batch(orjson.dumps({"points": sent}))
    assert len(points_copy_stream(padded)) > len(joined_copy_stream(padded))  # the premise: padded
    r = await guard.client.post("/api/v1/metrics/batch", json={"points": sent}, headers=h)
    assert r.status_code == 201, r.text
    t = metric_points.c
    async with guard.session() as s:
        stored = (await s.execute(select(t.component, t.metric_name, t.labels, t.value))).all()
    assert sorted((c, m, sorted(lab.items()), v) for c, m, lab, v in stored) == sorted(
        (p["component"], p["metric_name"], sorted(p["labels"].items()), p["value"]) for p in sent
    )
