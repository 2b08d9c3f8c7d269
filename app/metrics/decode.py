"""Request body -> validated ``Batch``, in two tiers. (The series shape of a batch,
``{"series": [...]}``, has its own two tiers in ``series_body``; this module picks the shape.)

1. The fast path decodes the body with msgspec straight into slotted, untracked structs of the
   expected types (strings, a finite float, optional timestamp; unknown fields refused) and keeps
   each point's labels as the raw JSON text, so a label set is parsed and checked once per distinct
   spelling, not once per point (and its ``Series`` is shared by later batches:
   ``series_body.series_for``). Per point what is left is two dict lookups. It never reports an
   error: on anything unexpected it declines.
2. The thorough path (``validation.check_points`` over an orjson parse) is the specification: it
   reports the index and field of every bad point, and it is what runs whenever the fast path
   declines. The fast path may only accept what the thorough path accepts, with the same result
   (``tests/metrics/test_decode.py`` checks the two against each other).

Measured on 10,000-point batches with the previous batches still alive (as under concurrent
requests): ~0.7 us per point against ~1.8 us for orjson + the column checks, and no per-point
objects for the cyclic garbage collector to scan.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

from app.core.errors import ValidationFailed
from app.metrics.series_body import (
    Declined,
    SeriesEntry,
    check_series,
    fast_series,
    series_for,
    text_series_decoder,
)
from app.metrics.validation import (
    MAX_ABS_VALUE,
    MAX_AGE,
    MAX_BATCH,
    MAX_FUTURE,
    Batch,
    Series,
    Stamp,
    check_points,
    make_stamp,
    parse_body,
    parse_time,
)


class _Point(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    component: str
    metric_name: str
    # msgspec refuses NaN/Infinity literals; the bound keeps the rollups' sum of squares finite.
    value: Annotated[float, msgspec.Meta(ge=-MAX_ABS_VALUE, le=MAX_ABS_VALUE)]
    labels: msgspec.Raw = msgspec.Raw()
    timestamp: str | float | None = None


class _Envelope(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    # Exactly one of the two (checked after decoding: msgspec has no "one of" for fields).
    points: list[_Point] | None = None
    series: list[SeriesEntry] | None = None


_Declined = Declined  # (one exception for both shapes' fast paths)
_SHAPES = ("points", "series")


@functools.cache
def _decoders() -> tuple[Any, Any, Any]:
    """msgspec decoders for one point, a bare list and ``{"points": [...]}``, built on first use."""
    return (
        msgspec.json.Decoder(_Point).decode,
        msgspec.json.Decoder(list[_Point]).decode,
        msgspec.json.Decoder(_Envelope).decode,
    )


def decode_batch(body: bytes, *, single: bool = False, now: datetime | None = None) -> Batch:
    """A validated batch from a request body: ``{"points": [...]}``, ``{"series": [...]}`` or a bare
    list of points, or one point when ``single``. Raises ``ValidationFailed`` (every bad point named)
    when anything is wrong."""
    now = now or datetime.now(UTC)
    try:
        return _fast(body, single, now)
    except (msgspec.DecodeError, _Declined, UnicodeError, RecursionError):
        pass  # (RecursionError: JSON nested deeper than msgspec follows; the thorough path refuses it)
    if not single:
        try:  # a series body with text timestamps (or a bad body: declined again)
            return fast_series(text_series_decoder()(body).series, now, texts=True)
        except (msgspec.DecodeError, _Declined, UnicodeError, RecursionError):
            pass
    parsed = parse_body(body)
    if single:
        return check_points([parsed], now=now)
    return check_body(parsed, now=now)


def check_body(parsed: Any, *, now: datetime) -> Batch:
    """The thorough path over a parsed batch body, of either shape."""
    if isinstance(parsed, dict) and "series" in parsed:
        return check_series(batch_items(parsed, "series"), now=now)
    return check_points(batch_items(parsed), now=now)


def batch_items(parsed: Any, shape: str = "points") -> Any:
    """The points (or series) of a parsed batch body: ``{"points": [...]}`` or ``{"series": [...]}``
    (one of them, nothing else), or a bare list of points."""
    if not isinstance(parsed, dict):
        return parsed
    if set(parsed) - {shape}:
        raise ValidationFailed(
            "the batch object takes either 'points' or 'series', and nothing else",
            details={
                "fields": [
                    {"field": key, "message": "unknown field" if key not in _SHAPES else "give one shape"}
                    for key in sorted(set(parsed) - {shape})[:10]
                ]
            },
        )
    return parsed.get(shape)


def _fast(body: bytes, single: bool, now: datetime) -> Batch:
    one, many, envelope = _decoders()
    if single:
        points = [one(body)]
    else:
        if body[:1] == b"[":
            points = many(body)
        else:
            decoded = envelope(body)
            if decoded.series is not None:
                if decoded.points is not None:
                    raise _Declined
                return fast_series(decoded.series, now, texts=False)
            if decoded.points is None:
                raise _Declined
            points = decoded.points
        if not 0 < len(points) <= MAX_BATCH:
            raise _Declined
    latest, earliest = now + MAX_FUTURE, now - MAX_AGE
    series: list[Series] = []
    by_raw: dict[tuple[str, str, bytes], int] = {}  # (component, name, labels as written) -> series index
    by_key: dict[tuple[str, str, str], int] = {}  # (component, name, canonical labels) -> series index
    times: dict[Any, Stamp] = {None: make_stamp(now)}
    sids: list[int] = []
    values: list[float] = []
    stamps: list[Stamp] = []
    add_sid, add_value, add_stamp = sids.append, values.append, stamps.append

    def new_series(component: str, name: str, raw: bytes) -> int:
        found = series_for(component, name, raw)  # (checked, or declined)
        key = (component, name, found.series_key)
        sid = by_key.get(key)
        if sid is None:
            sid = by_key[key] = len(series)
            series.append(found)
        return sid

    def new_stamp(raw_ts: Any) -> Stamp:
        try:
            ts = parse_time(raw_ts)
        except (ValueError, OverflowError, OSError):
            raise _Declined from None
        if not earliest <= ts <= latest:
            raise _Declined
        stamp = times[raw_ts] = make_stamp(ts)
        return stamp

    for p in points:
        component, name, raw = p.component, p.metric_name, bytes(p.labels)
        sid = by_raw.get((component, name, raw))
        if sid is None:
            sid = by_raw[(component, name, raw)] = new_series(component, name, raw)
        raw_ts = p.timestamp
        stamp = times.get(raw_ts)
        if stamp is None:
            stamp = new_stamp(raw_ts)
        add_sid(sid)
        add_value(p.value)
        add_stamp(stamp)
    return Batch(series, sids, values, stamps)
