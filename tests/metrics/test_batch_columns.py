"""A batch's numpy columns (built once, shared by the COPY stream, the rollup deltas and ``latest``)
say what its points say, and ``latest`` picks each series' latest point in any order of the points:
the latest timestamp, and the last of the batch's points among equal ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from app.metrics.validation import Batch, Series, check_points, make_stamp

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SERIES = [Series(f"c{i}", "m", "", {}, "{}") for i in range(4)]


def reference_latest(batch: Batch) -> dict[int, int]:
    """Per series, the index of its point with the largest (timestamp, index)."""
    best: dict[int, tuple[int, int]] = {}
    for i, (sid, stamp) in enumerate(zip(batch.sids, batch.stamps, strict=True)):
        best[sid] = max(best.get(sid, (stamp.micros, i)), (stamp.micros, i))
    return {sid: i for sid, (_, i) in best.items()}


def batch_at(points: list[tuple[int, datetime]]) -> Batch:
    stamps = {ts: make_stamp(ts) for _, ts in points}  # one Stamp per distinct time, as decoding does
    return Batch(
        SERIES,
        [sid for sid, _ in points],
        [float(i) for i in range(len(points))],
        [stamps[ts] for _, ts in points],
    )


# Whole seconds and fractions, around minute boundaries, before and after 2000-01-01 (Postgres' epoch).
_times = st.builds(
    lambda base, us: base + timedelta(microseconds=us),
    st.sampled_from(
        [
            datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC),
            datetime(2000, 1, 1, tzinfo=UTC),
            datetime(2026, 11, 23, 11, 59, 0, tzinfo=UTC),
            datetime(2026, 11, 23, 11, 58, 59, tzinfo=UTC),
        ]
    ),
    st.sampled_from([0, 1, 999_999, 1_000_000, 59_999_999]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(SERIES) - 1), _times), min_size=1, max_size=40))
def test_columns_and_latest_agree_with_the_points(points):
    assert batch_at(points).latest() == reference_latest(batch_at(points))  # columns not built: Python
    batch = batch_at(points)
    columns = batch.columns()
    assert columns is batch.columns()  # built once
    assert not any(a.flags.writeable for a in (columns.sids, columns.values, columns.micros, columns.minutes))
    assert columns.sids.tolist() == batch.sids
    assert columns.values.tolist() == batch.values
    assert columns.micros.tolist() == [s.micros for s in batch.stamps]
    assert columns.minutes.tolist() == [s.minute for s in batch.stamps]
    assert batch.latest() == reference_latest(batch)  # from the columns: numpy


def test_latest_out_of_order_and_on_equal_timestamps():
    t = NOW - timedelta(minutes=1)
    batch = check_points(
        [
            {
                "component": "a",
                "metric_name": "m",
                "value": 1.0,
                "timestamp": (t + timedelta(seconds=30)).isoformat(),
            },
            {"component": "b", "metric_name": "m", "value": 2.0, "timestamp": t.isoformat()},
            {
                "component": "a",
                "metric_name": "m",
                "value": 3.0,
                "timestamp": t.isoformat(),
            },  # older: not latest
            {
                "component": "b",
                "metric_name": "m",
                "value": 4.0,
                "timestamp": t.isoformat(),
            },  # equal: the later
            {"component": "c", "metric_name": "m", "value": 5.0, "timestamp": t.isoformat()},
        ],
        now=NOW,
    )
    expected = {"a": 1.0, "b": 4.0, "c": 5.0}
    assert {batch.series[sid].component: batch.values[i] for sid, i in batch.latest().items()} == expected
    batch.columns()
    assert {batch.series[sid].component: batch.values[i] for sid, i in batch.latest().items()} == expected
