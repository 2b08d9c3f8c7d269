import math
import random
import statistics

from app.metrics.sketch import QuantileSketch


def _true_quantile(sorted_vals, q):
    return sorted_vals[math.floor(q * (len(sorted_vals) - 1))]


def test_exact_statistics_on_small_data():
    vals = [3.0, -1.5, 0.0, 7.25, 2.0, 2.0]
    sk = QuantileSketch()
    for v in vals:
        sk.add(v)
    assert sk.count == 6
    assert sk.sum == sum(vals)
    assert sk.min == -1.5 and sk.max == 7.25
    assert math.isclose(sk.mean, statistics.fmean(vals))
    assert math.isclose(sk.stddev, statistics.pstdev(vals))


def test_quantiles_within_one_percent_on_lognormal():
    rng = random.Random(42)
    vals = [rng.lognormvariate(0.0, 1.5) for _ in range(100_000)]
    sk = QuantileSketch(relative_accuracy=0.005)
    sk.add_many(vals)
    srt = sorted(vals)
    for q in (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999):
        true = _true_quantile(srt, q)
        assert abs(sk.quantile(q) - true) <= 0.01 * abs(true), q


def test_merge_equals_sketch_of_union():
    rng = random.Random(7)
    a_vals = [rng.gauss(10, 5) for _ in range(5000)]
    b_vals = [rng.expovariate(0.1) for _ in range(3000)]
    a, b, union = QuantileSketch(), QuantileSketch(), QuantileSketch()
    a.add_many(a_vals)
    for v in b_vals:
        b.add(v)
    union.add_many(a_vals + b_vals)
    a.merge(b)
    assert a.pos == union.pos and a.neg == union.neg and a.zero_count == union.zero_count
    assert a.count == union.count and a.min == union.min and a.max == union.max
    assert math.isclose(a.mean, union.mean, rel_tol=1e-12)
    assert math.isclose(a.stddev, union.stddev, rel_tol=1e-9)
    for q in (0.05, 0.5, 0.95, 0.99):
        assert a.quantile(q) == union.quantile(q)


def test_bytes_round_trip_and_add_equals_add_many():
    rng = random.Random(3)
    vals = [rng.uniform(-100, 100) for _ in range(2000)] + [0.0] * 10
    one, bulk = QuantileSketch(), QuantileSketch()
    for v in vals:
        one.add(v)
    bulk.add_many(vals)
    assert one.pos == bulk.pos and one.neg == bulk.neg
    restored = QuantileSketch.from_bytes(bulk.to_bytes())
    assert restored.to_dict() == bulk.to_dict()
    assert restored.pos == bulk.pos and restored.neg == bulk.neg and restored.zero_count == 10


def test_negative_and_zero_values():
    vals = [-1000.0, -10.0, -1.0, 0.0, 0.0, 0.0, 1.0, 10.0, 1000.0]
    sk = QuantileSketch()
    sk.add_many(vals)
    srt = sorted(vals)
    for q in (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 1.0):
        true = _true_quantile(srt, q)
        got = sk.quantile(q)
        assert abs(got - true) <= 0.01 * abs(true), (q, got, true)
    assert sk.quantile(0.5) == 0.0


def test_bounded_buckets_keep_upper_quantiles():
    sk = QuantileSketch(relative_accuracy=0.01, max_buckets=64)
    vals = [1.01**i for i in range(3000)]  # spans far more than 64 buckets
    sk.add_many(vals)
    assert len(sk.pos) <= 64
    srt = sorted(vals)
    true = _true_quantile(srt, 0.99)
    assert abs(sk.quantile(0.99) - true) <= 0.01 * true


def test_empty_sketch():
    sk = QuantileSketch()
    assert math.isnan(sk.quantile(0.5)) and sk.count == 0
    assert QuantileSketch.from_bytes(sk.to_bytes()).count == 0
