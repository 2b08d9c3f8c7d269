"""``build_deltas`` (vectorised; the minute level) and ``coarse_deltas`` (the ten-minute and hour levels
compaction builds from those minute deltas) against their specification: per (series, bucket) of
each level, the sketch ``sketch_of`` makes of that bucket's values, as ``delta_fields`` encodes it."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.metrics.rollup_merge import coarse_deltas
from app.metrics.rollups import (
    _SPARSE,
    RESOLUTIONS,
    build_deltas,
    delta_fields,
    is_fresh,
    merge_blobs,
    sketch_of,
)
from app.metrics.validation import check_points

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
COLUMNS = ("count", "sum", "min", "max", "sumsq")


def expected(batch) -> dict[tuple, tuple]:
    values: defaultdict[tuple, list[float]] = defaultdict(list)
    for p in batch.points():
        for res in RESOLUTIONS:
            start = p.minute // res * res
            values[(res, p.component, p.metric_name, p.series_key, start)].append(p.value)
    return {key: delta_fields(sketch_of(vals)) for key, vals in values.items()}


def deltas(batch) -> list[tuple]:
    minutes = build_deltas(batch)
    assert all(r[0] == 60 and is_fresh(r[10]) for r in minutes)  # minute rows only, fresh
    return minutes + coarse_deltas(minutes)


def assert_rows_match(batch) -> None:
    rows = deltas(batch)
    got = {(r[0], r[1], r[2], r[3], int(r[4].timestamp())): r[5:] for r in rows}
    assert len(got) == len(rows), "one row per (series, bucket) and level"
    want = expected(batch)
    assert got.keys() == want.keys()
    for key, fields in got.items():
        ref = want[key]
        assert fields[0] == ref[0] and fields[2:4] == ref[2:4], key  # count, min, max: exact
        for name, a, b in zip(COLUMNS[1::3], fields[1::3], ref[1::3], strict=True):  # sum, sumsq
            assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6), (key, name, a, b)
        assert fields[6] is False  # not compacted
        sk, ref_sk = merge_blobs([fields[5]]), merge_blobs([ref[5]])
        assert (sk.count, sk.zero_count, sk.pos, sk.neg) == (
            ref_sk.count,
            ref_sk.zero_count,
            ref_sk.pos,
            ref_sk.neg,
        ), key
        # Merged minute deltas (parallel variance) vs one pass over the values. Each part's mean is
        # stored rounded, so a merge can be off by up to about one unit in the last place of the
        # values' magnitude (an absolute error: relative to a stddev of a few hundred such units,
        # as in a tight cluster of large values, that is ~1e-3), and otherwise agrees to rounding.
        magnitude = max(abs(ref_sk.min), abs(ref_sk.max))
        assert abs(sk.stddev - ref_sk.stddev) <= 1e-12 * ref_sk.stddev + 2 * math.ulp(magnitude), key
    assert not any(is_fresh(r[10]) for r in rows if r[0] != 60)  # coarser rows: never rolled up again


values = st.one_of(
    st.floats(min_value=-1e150, max_value=1e150, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1e-9, -1e-9, 1e-10, 1.0, 2.5]),
    st.floats(min_value=0.001, max_value=1000.0),
)
points = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 3), values, st.integers(0, 3 * 3600)),
    min_size=1,
    max_size=300,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(points)
def test_rows_are_the_sketches_of_each_bucket(pts):
    batch = check_points(
        [
            {
                "component": f"c{c}",
                "metric_name": "m",
                "value": v,
                "labels": {"shard": str(s)} if s else {},
                "timestamp": (NOW - timedelta(seconds=age)).isoformat(),
            }
            for c, s, v, age in pts
        ],
        now=NOW,
    )
    assert_rows_match(batch)


def test_an_hour_of_more_buckets_than_a_sketch_keeps_is_collapsed_like_a_sketch():
    # 3,000 values spread over ~12 decades: ~5,500 distinct buckets in the hour (> 2,048).
    items = [
        {
            "component": "c",
            "metric_name": "m",
            "value": 10 ** (i / 250 - 6),
            "timestamp": (NOW - timedelta(seconds=3600 + i)).isoformat(),
        }
        for i in range(3000)
    ]
    batch = check_points(items, now=NOW)
    assert_rows_match(batch)
    hour = max((r for r in deltas(batch) if r[0] == 3600), key=lambda r: r[5])
    assert hour[5] == 2999
    tag, count, *_, positive_buckets, negative_buckets = _SPARSE.unpack_from(hour[10])
    assert (count, positive_buckets, negative_buckets) == (2999, 2048, 0)  # as stored, not as read


def exact_stddev(values: list[float]) -> float:
    exact = [Fraction(v) for v in values]
    mean = sum(exact) / len(exact)
    return math.sqrt(sum((v - mean) ** 2 for v in exact) / len(exact))


def test_a_tight_cluster_of_large_values_keeps_its_stddev():
    """The mean of values a few hundred units in the last place apart around 2e7 is not a double (and
    a sum added in order is many units off): M2 taken about a rounded mean grows by n * its error^2
    unless the second pass corrects it. Each minute's stddev is then exact to rounding, and a coarser
    bucket's, merged from those minutes, within two units in the last place of the values."""
    rng = random.Random(7)
    base = 2e7
    unit = math.ulp(base)
    sent = [(base + unit * rng.randint(-300, 300), rng.uniform(0, 2 * 3600)) for _ in range(2000)]
    sent += [(base, 7300.0), (base + unit, 7300.5)]  # a minute of two values one unit apart
    batch = check_points(
        [
            {
                "component": "c",
                "metric_name": "m",
                "value": v,
                "timestamp": (NOW - timedelta(seconds=age)).isoformat(),
            }
            for v, age in sent
        ],
        now=NOW,
    )
    by_bucket: defaultdict[tuple, list[float]] = defaultdict(list)
    for p in batch.points():
        for res in RESOLUTIONS:
            by_bucket[(res, p.minute // res * res)].append(p.value)
    minutes = build_deltas(batch)
    for row in minutes:
        values = by_bucket[(60, int(row[4].timestamp()))]
        exact = exact_stddev(values)
        assert math.isclose(merge_blobs([row[10]]).stddev, exact, rel_tol=1e-12), row[4]
        assert math.isclose(sketch_of(values).stddev, exact, rel_tol=1e-12), row[4]
        negated = sketch_of([-v for v in values])  # (the general path: values below zero)
        assert math.isclose(negated.stddev, exact, rel_tol=1e-12), row[4]
    assert any(merge_blobs([row[10]]).count == 2 for row in minutes)
    for row in coarse_deltas(minutes):
        exact = exact_stddev(by_bucket[(row[0], int(row[4].timestamp()))])
        assert abs(merge_blobs([row[10]]).stddev - exact) <= 2 * unit, row[:5]


@settings(max_examples=200, deadline=None)
@given(
    # Series in the batch, and minutes between its first and last point (epoch seconds stay below 2**32);
    # together with the code's 19 bits past 62 bits only with more series than a batch has: the fallback.
    st.integers(1, 1 << 24),
    st.integers(0, 1 << 25),
    st.lists(st.tuples(st.integers(0, 2), st.integers(-2100, 35_000)), min_size=1, max_size=200),
    st.randoms(use_true_random=False),
)
def test_the_grouping_order_is_the_two_key_lexsort(nseries, span, codes, rnd):
    """Points grouped by (series, minute, sketch bucket code), ties in batch order: the packed one-key
    stable sort and its fallback give exactly the order of ``np.lexsort((codes, (sids << 32) + minutes))``."""
    import numpy as np

    from app.metrics.rollups import _KEY_OFFSET, _STORE_SHIFT, _grouping_order

    n = len(codes)
    first = 1_700_000_000 // 60 * 60
    sids = np.array([rnd.randrange(nseries) for _ in range(n)], dtype=np.int64)
    minutes = np.array([first + 60 * rnd.choice((0, span, rnd.randint(0, span))) for _ in range(n)])
    minutes[0], minutes[-1] = first, first + 60 * span  # the batch's span (a one-point batch has none)
    codes_ = np.array([(store << _STORE_SHIFT) + key + _KEY_OFFSET for store, key in codes], dtype=np.int64)
    order = _grouping_order(np, sids, minutes.astype(np.int64), codes_, nseries)
    assert order.tolist() == np.lexsort((codes_, (sids << 32) + minutes)).tolist()
