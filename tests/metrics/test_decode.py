"""The ingest fast path (msgspec) against the thorough path (orjson + ``check_points``), which is the
specification: same batch when a body is good, the same complete error list when it is not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.errors import ValidationFailed
from app.metrics import decode
from app.metrics.decode import batch_items, decode_batch
from app.metrics.validation import Batch, check_points

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def thorough(body: bytes, single: bool = False) -> Batch:
    parsed = orjson.loads(body)
    items = [parsed] if single else batch_items(parsed)
    return check_points(items, now=NOW)


def outcome(fn, *args, **kwargs) -> Any:
    """A comparable picture of a batch (per point: series identity, value, timestamp) or of the error."""
    try:
        batch = fn(*args, **kwargs)
    except ValidationFailed as exc:
        return ("rejected", exc.message, exc.details)
    return (
        "accepted",
        [
            (
                (s.component, s.metric_name, s.series_key, s.labels_json, s.labels),
                v,
                st.ts,
                st.minute,
                st.copy_field,
            )
            for s, v, st in zip(
                map(batch.series.__getitem__, batch.sids), batch.values, batch.stamps, strict=True
            )
        ],
        bytes(batch.copy_payload()),
        batch.latest(),
    )


def same(body: bytes, single: bool = False) -> Any:
    fast = outcome(decode_batch, body, single=single, now=NOW)
    assert fast == outcome(thorough, body, single)
    return fast


def pt(**over: Any) -> dict[str, Any]:
    return {
        "component": "etl",
        "metric_name": "rows",
        "value": 1.5,
        "labels": {"stage": "load"},
        "timestamp": "2026-11-23T11:59:00+00:00",
        **over,
    }


def test_good_batch_takes_the_fast_path(monkeypatch):
    body = orjson.dumps(
        {"points": [pt(value=float(i), labels={"b": "2", "a": str(i % 3)}) for i in range(50)]}
    )
    expected = outcome(thorough, body)
    monkeypatch.setattr(
        decode, "check_points", lambda *a, **k: pytest.fail("the fast path declined a good batch")
    )
    assert outcome(decode_batch, body, now=NOW) == expected
    assert expected[0] == "accepted" and len(expected[1]) == 50


def test_bad_batch_names_every_bad_point():
    body = orjson.dumps(
        [pt(), pt(value=True), pt(metric_name="9x"), pt(extra=1), pt(timestamp="2030-01-01T00:00:00Z")]
    )
    kind, _message, details = same(body)
    assert kind == "rejected"
    assert {(e["index"], e["field"]) for e in details["errors"]} == {
        (1, "value"),
        (2, "metric_name"),
        (3, "point"),
        (4, "timestamp"),
    }


CASES = [
    [pt()],
    [pt(labels=None), pt(labels={}), pt(labels={"a": "1", "b": "2"}), pt(labels={"b": "2", "a": "1"})],
    [
        pt(timestamp=None),
        pt(timestamp=1795435140),
        pt(timestamp=1795435140.5),
        pt(timestamp="2026-11-23T11:59:00Z"),
    ],
    [pt(timestamp="2026-11-23T11:59:00")],  # naive = UTC
    [pt(value=3), pt(value=-0.0), pt(value=1e308), pt(value=2**63 - 1)],
    [pt(value="1")],
    [pt(value=None)],
    [pt(value=False)],
    [pt(timestamp=True)],
    [pt(timestamp=[1])],
    [pt(timestamp="yesterday")],
    [pt(timestamp=0)],
    [pt(labels=[])],
    [pt(labels="a=b")],
    [pt(labels={"a": 1})],
    [pt(labels={"bad-key": "v"})],
    [pt(labels={f"k{i}": "v" for i in range(33)})],
    [pt(labels={"a": "x" * 257})],
    [pt(component="")],
    [pt(component="a b")],
    [pt(component=7)],
    [pt(metric_name="x" * 201)],
    [pt(timestmap="2026-11-23T11:59:00Z")],
    ["not a point"],
    [None],
    [],
    [pt()] * 10_001,
    [pt(timestamp="2026-11-23T11:59:30Z"), pt(timestamp="2026-11-23T11:59:00Z")],  # out of order: latest()
]


@pytest.mark.parametrize("points", CASES, ids=range(len(CASES)))
def test_fast_and_thorough_agree(points):
    same(orjson.dumps({"points": points}))
    same(orjson.dumps(points))


def test_bodies_that_are_not_batches():
    for body in (
        b"{}",
        b'{"points": 3}',
        b'{"points": [], "x": 1}',
        b"3",
        b'"x"',
        b"null",
        b'{"points": [{"component": "etl", "metric_name": "rows", "value": 1}], "extra": true}',
        b'  [{"component": "etl", "metric_name": "rows", "value": 1}]',
        b'[{"component": "etl", "metric_name": "rows", "value": 1, "labels": {"a": "1", "a": "2"}}]',
    ):
        same(body)


def test_huge_integers():
    head = b'[{"component": "etl", "metric_name": "rows", "value": '
    for digits in (b"1" + b"0" * 30, b"1" + b"0" * 308, b"-1" + b"0" * 400):
        body = head + digits + b"}]"
        try:
            expected = outcome(thorough, body)
        except orjson.JSONDecodeError:  # orjson refuses the literal: the body is rejected as invalid JSON
            with pytest.raises(ValidationFailed):
                decode_batch(body, now=NOW)
        else:
            assert outcome(decode_batch, body, now=NOW) == expected


def test_invalid_json_is_rejected_alike():
    for body in (b"[", b'{"component": "etl", "metric_name": "x", "value": NaN}', b"\xff"):
        with pytest.raises(ValidationFailed):
            decode_batch(body, now=NOW)
        with pytest.raises(ValidationFailed):
            decode_batch(body, single=True, now=NOW)


def test_single_point():
    assert same(orjson.dumps(pt()), single=True)[0] == "accepted"
    assert same(orjson.dumps(pt(value=None)), single=True)[0] == "rejected"
    assert same(orjson.dumps([pt()]), single=True)[0] == "rejected"


_text = st.one_of(st.sampled_from(["etl", "load", "a.b/c", "x:y", "", "9", "é", "a b"]), st.text(max_size=6))
_value = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**63), 2**63 - 1),
    st.none(),
    st.booleans(),
    st.just("1"),
)
_labels = st.one_of(
    st.none(), st.dictionaries(st.sampled_from(["a", "b", "c", "bad-k"]), _text, max_size=3), st.just([])
)
_ts = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "2026-11-23T11:59:00Z",
            "2026-11-23T11:58:00+01:00",
            "2026-11-23 11:57",
            "soon",
            "2031-01-01T00:00:00Z",
        ]
    ),
    st.integers(1795430000, 1795436000),
    st.floats(1795430000, 1795436000),
    st.booleans(),
)
_point = st.fixed_dictionaries(
    {"component": st.one_of(_text, st.integers(0, 99)), "metric_name": _text, "value": _value},
    optional={"labels": _labels, "timestamp": _ts, "extra": st.integers(0, 9)},
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_point, min_size=0, max_size=12))
def test_fast_and_thorough_agree_on_generated_batches(points):
    same(orjson.dumps({"points": points}))


def test_now_bounds_apply_on_the_fast_path():
    ok = (NOW + timedelta(minutes=4)).isoformat()
    late = (NOW + timedelta(minutes=6)).isoformat()
    assert same(orjson.dumps([pt(timestamp=ok)]))[0] == "accepted"
    assert same(orjson.dumps([pt(timestamp=late)]))[0] == "rejected"


_good_point = st.fixed_dictionaries(
    {
        "component": st.sampled_from(["etl", "load", "a.b/c"]),
        "metric_name": st.sampled_from(["rows", "x:y", "_z"]),
        "value": st.one_of(st.floats(min_value=-1e150, max_value=1e150), st.integers(-(2**53), 2**53)),
    },
    optional={
        "labels": st.one_of(
            st.none(), st.dictionaries(st.sampled_from(["a", "b"]), st.sampled_from(["1", "é"]))
        ),
        "timestamp": st.one_of(
            st.none(),
            st.sampled_from(["2026-11-23T11:59:00Z", "2026-11-23T12:58:00+01:00"]),
            st.integers(1795430000, 1795435200),
        ),
    },
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_good_point, min_size=1, max_size=20))
def test_fast_and_thorough_agree_on_good_batches(points):
    assert same(orjson.dumps(points))[0] == "accepted"


def test_points_for_chosen_series_only():
    batch = decode_batch(
        orjson.dumps([pt(metric_name="a"), pt(metric_name="b"), pt(metric_name="a", value=2.0)]), now=NOW
    )
    assert [(p.metric_name, p.value) for p in batch.points(lambda s: s.metric_name == "a")] == [
        ("a", 1.5),
        ("a", 2.0),
    ]
    assert batch.points(lambda s: False) == []
    assert len(batch.points()) == 3
