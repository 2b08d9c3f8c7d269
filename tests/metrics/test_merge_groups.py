"""``merge_groups`` (compaction's vectorised merge of many groups of rollup sketches at once) against
its specification: each group merged by ``merge_blobs``, as ``encode_sketch`` writes it back."""

from __future__ import annotations

import math
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.metrics.rollup_merge import merge_groups
from app.metrics.rollups import (
    _FRESH_TAG,
    _SPARSE,
    _SPARSE_TAG,
    encode_sketch,
    merge_blobs,
    new_sketch,
    sketch_of,
)
from app.metrics.sketch import QuantileSketch

values = st.one_of(
    st.floats(min_value=-1e150, max_value=1e150, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1e-9, -1e-9, 1e-10, 1.0, 2.5]),
    st.floats(min_value=0.001, max_value=1000.0),
)
sketches = st.one_of(
    st.tuples(st.lists(values, min_size=1, max_size=40), st.sampled_from([_SPARSE_TAG, _FRESH_TAG])).map(
        lambda vt: encode_sketch(sketch_of(vt[0]), vt[1])
    ),
    st.just(encode_sketch(new_sketch())),  # an empty sketch
)
groups = st.lists(st.lists(sketches, min_size=1, max_size=6), min_size=1, max_size=12)


def assert_same(got: tuple, blobs: list[bytes]) -> None:
    ref = merge_blobs(blobs)
    count, total, lo, hi, sumsq, blob = got
    assert count == ref.count
    assert blob[:1] == bytes([_SPARSE_TAG])  # merged: the plain tag (compacted, or a coarser delta)
    # Sums in another order differ by rounding, which cancellation (1e150 beside -1e150) makes large
    # next to the result: the bound is the summands' magnitude, count x largest |value| x 4 ulps.
    size = max(abs(ref.min), abs(ref.max)) if ref.count else 0.0
    slack = 4 * sys.float_info.epsilon * ref.count
    if ref.count:
        assert (lo, hi) == (ref.min, ref.max)
        assert math.isclose(total, ref.sum, rel_tol=1e-9, abs_tol=1e-6 + slack * size)
        assert math.isclose(sumsq, ref.sum_of_squares, rel_tol=1e-9, abs_tol=1e-6 + slack * size * size)
    sk = merge_blobs([blob])
    assert (sk.count, sk.zero_count, sk.pos, sk.neg) == (ref.count, ref.zero_count, ref.pos, ref.neg)
    if ref.count:
        assert math.isclose(sk.mean, ref.mean, rel_tol=1e-9, abs_tol=1e-9 + slack * size / ref.count)
        assert math.isclose(sk.stddev, ref.stddev, rel_tol=1e-9, abs_tol=1e-6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(groups)
def test_every_group_is_what_merge_blobs_makes_of_it(gs):
    got = merge_groups(gs)
    assert len(got) == len(gs)
    for fields, blobs in zip(got, gs, strict=True):
        assert_same(fields, blobs)


def test_groups_over_the_bucket_budget_or_of_another_layout_are_merged_like_sketches():
    # Six decades each (~1,400 buckets), side by side: more buckets than a sketch keeps (2,048), collapsed.
    wide = [encode_sketch(sketch_of([10 ** (i / 250 - 6 + 6 * j) for i in range(1500)])) for j in range(3)]
    dense = QuantileSketch()
    dense.add_many([1.0, 2.0, -3.0, 0.0])
    small = encode_sketch(sketch_of([4.0, 5.0]))
    gs = [wide, [dense.to_bytes(), small], [small, small]]
    got = merge_groups(gs)
    for fields, blobs in zip(got, gs, strict=True):
        assert_same(fields, blobs)
    positive, negative = _SPARSE.unpack_from(got[0][5])[-2:]
    assert positive + negative == 2048
