"""The series shape of a batch body: ``{"series": [{component, metric_name, labels, timestamps, values}]}``.

Pipelines push many points of few series; said once per series, the identity (component, metric,
labels) is parsed and checked once per series entry, and the timestamps and values arrive as arrays.
Two tiers, as for the point format (``decode``):

1. ``fast_series``: msgspec has already decoded the entries (values as lists of bounded floats,
   timestamps as lists of numbers); values and times become numpy columns in whole-array steps
   (``Batch.from_columns``): no Python per point. A body with any text timestamp fails that decoding
   and is decoded again with texts allowed (``TextSeriesEntry``); its times are then parsed once per
   distinct one. It never reports an error: on anything unexpected it declines.
2. ``check_series``: the specification. It expands the entries into point dicts and checks them with
   ``check_points`` (so both shapes accept exactly the same points, with the same rows), and names
   the entry (``series``), the point (``index``) and the field of every problem. A problem of the
   entry itself (its component, metric name or labels, or its arrays' shape) names the entry only:
   every point of it is invalid.

Both shapes share every limit: 10,000 points per batch (counted in points), value bounds, finite,
the age/future window, label and name rules; all or nothing.
"""

from __future__ import annotations

import functools
from bisect import bisect_right
from collections.abc import Sequence
from datetime import datetime
from itertools import chain
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
import orjson

from app.core.errors import ValidationFailed
from app.metrics.validation import (
    MAX_ABS_VALUE,
    MAX_AGE,
    MAX_BATCH,
    MAX_FUTURE,
    Batch,
    Series,
    check_points,
    label_problem,
    make_stamp,
    parse_time,
    series_key,
    valid_component,
    valid_metric_name,
)

if TYPE_CHECKING:
    import numpy as np

SERIES_FIELDS = frozenset({"component", "metric_name", "labels", "timestamps", "values"})
_NO_LABELS = (b"", b"null", b"{}")
# Unix seconds of 2000-01-01 UTC (``Stamp.micros``' epoch).
_PG_EPOCH_S = 946_684_800


_Value = Annotated[float, msgspec.Meta(ge=-MAX_ABS_VALUE, le=MAX_ABS_VALUE)]


class SeriesEntry(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """An entry whose timestamps are all numbers (epoch seconds): the usual, all-numpy case."""

    component: str
    metric_name: str
    timestamps: list[float]
    # msgspec refuses NaN/Infinity literals; the bound keeps the rollups' sum of squares finite.
    values: list[_Value]
    labels: msgspec.Raw = msgspec.Raw()


class TextSeriesEntry(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """An entry of a body that has text timestamps somewhere (decoded again as this when the
    numeric decoding fails): its times are parsed once per distinct one, in Python."""

    component: str
    metric_name: str
    timestamps: list[str | float]
    values: list[_Value]
    labels: msgspec.Raw = msgspec.Raw()


class _TextSeriesBody(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    series: list[TextSeriesEntry]


class Declined(Exception):
    """The fast path cannot vouch for this body; the thorough path decides."""


@functools.cache
def text_series_decoder() -> Any:
    """``{"series": [...]}`` with text (or mixed) timestamps."""
    return msgspec.json.Decoder(_TextSeriesBody).decode


def fast_series(entries: Sequence[SeriesEntry | TextSeriesEntry], now: datetime, *, texts: bool) -> Batch:
    """A columnar batch from decoded entries (``texts``: ``TextSeriesEntry``), or ``Declined``."""
    import numpy as np  # here, not at import: the CLI imports the decoders' module

    from app.metrics.columns import columns_of

    sizes = [len(e.values) for e in entries]
    total = sum(sizes)
    if not entries or not 0 < total <= MAX_BATCH or 0 in sizes:
        raise Declined
    earliest_us, latest_us = make_stamp(now - MAX_AGE).micros, make_stamp(now + MAX_FUTURE).micros
    series: list[Series] = []
    by_raw: dict[tuple[str, str, bytes], int] = {}  # (component, name, labels as written) -> series index
    by_key: dict[tuple[str, str, str], int] = {}  # (component, name, canonical labels) -> series index
    entry_sids: list[int] = []
    for entry, size in zip(entries, sizes, strict=True):
        if len(entry.timestamps) != size:
            raise Declined
        component, name, raw = entry.component, entry.metric_name, bytes(entry.labels)
        sid = by_raw.get((component, name, raw))
        if sid is None:
            sid = by_raw[(component, name, raw)] = _new_series(series, by_key, component, name, raw)
        entry_sids.append(sid)
    sids = np.repeat(np.asarray(entry_sids, dtype=np.intp), sizes)
    values = np.fromiter(chain.from_iterable(e.values for e in entries), dtype=np.float64, count=total)
    if texts:
        written = list(chain.from_iterable(e.timestamps for e in entries))
        # Each distinct timestamp as written (text or number) parsed once; the points map through.
        parsed = {raw: _micros_of(raw, earliest_us, latest_us) for raw in dict.fromkeys(written)}
        micros = np.fromiter(map(parsed.__getitem__, written), dtype=np.int64, count=total)
    else:
        seconds = np.fromiter(
            chain.from_iterable(e.timestamps for e in entries), dtype=np.float64, count=total
        )
        micros = _epoch_micros(np, seconds, earliest_us, latest_us)
    entries_at = list(zip(entry_sids, sizes, strict=True))
    return Batch.from_columns(series, columns_of(sids, values, micros), entries_at)


def _new_series(
    series: list[Series], by_key: dict[tuple[str, str, str], int], component: str, name: str, raw: bytes
) -> int:
    found = series_for(component, name, raw)
    key = (component, name, found.series_key)
    sid = by_key.get(key)
    if sid is None:
        sid = by_key[key] = len(series)
        series.append(found)
    return sid


# The series of recent batches, by (component, metric name, labels as written): pipelines push the
# same few series batch after batch, and checking a series' names and labels and encoding its COPY
# fields cost ~3 us each time (~30 ns per point of a 10,000-point batch of 100 series). A ``Series``
# is never changed once built, so batches share them. Bounded: emptied when full, and a label set
# longer than ``_CACHED_LABELS_MAX`` bytes is never kept (at most ~10 MB).
_KNOWN_SERIES: dict[tuple[str, str, bytes], Series] = {}
_KNOWN_SERIES_MAX = 4096
_CACHED_LABELS_MAX = 512


def series_for(component: str, name: str, raw: bytes) -> Series:
    """The checked ``Series`` of a (component, metric name, labels' JSON as written), or ``Declined``."""
    found = _KNOWN_SERIES.get((component, name, raw))
    if found is not None:
        return found
    if not (valid_component(component) and valid_metric_name(name)):
        raise Declined
    labels: Any = {} if raw in _NO_LABELS else orjson.loads(raw)
    if type(labels) is not dict or (labels and label_problem(labels) is not None):
        raise Declined
    key = series_key(labels)
    found = Series(component, name, key, labels, key or "{}")
    if len(raw) <= _CACHED_LABELS_MAX:
        if len(_KNOWN_SERIES) >= _KNOWN_SERIES_MAX:
            _KNOWN_SERIES.clear()
        _KNOWN_SERIES[(component, name, raw)] = found
    return found


def _micros_of(raw: Any, earliest_us: int, latest_us: int) -> int:
    """A written timestamp's microseconds, parsed as the point format parses it, or ``Declined``."""
    try:
        micros = make_stamp(parse_time(raw)).micros
    except (ValueError, OverflowError, OSError):
        raise Declined from None
    if not earliest_us <= micros <= latest_us:
        raise Declined
    return micros


def _epoch_micros(np: Any, seconds: np.ndarray, earliest_us: int, latest_us: int) -> np.ndarray:
    """Microseconds since 2000-01-01 of epoch seconds, rounded exactly as ``datetime.fromtimestamp``
    rounds them (the point format's parse): the fraction times 1e6, rounded half to even, added to the
    whole seconds. Declines a batch with any time outside the window."""
    fraction, whole = np.modf(seconds)
    # The window on the whole seconds first (NaN never reaches here: JSON has none), so that the
    # integer arithmetic below cannot overflow.
    low, high = earliest_us // 1_000_000 - 1 + _PG_EPOCH_S, latest_us // 1_000_000 + 1 + _PG_EPOCH_S
    if not (whole.min() >= low and whole.max() <= high):
        raise Declined
    micros = (whole.astype(np.int64) - _PG_EPOCH_S) * 1_000_000 + np.rint(fraction * 1e6).astype(np.int64)
    if not (micros.min() >= earliest_us and micros.max() <= latest_us):
        raise Declined
    return micros


# --- the thorough path --------------------------------------------------------------------------
_NO_TIME = object()  # a missing or null timestamp in an entry: refused (``parse_time`` says why)
_ENTRY_FIELDS = ("component", "metric_name")
_RENAMED = {"value": "values", "timestamp": "timestamps"}


def check_series(entries: Any, *, now: datetime) -> Batch:
    """Validate a parsed ``series`` list; raise ``ValidationFailed`` naming every problem."""
    if not isinstance(entries, list):
        raise ValidationFailed(
            "expected a list of series",
            details={"fields": [{"field": "series", "message": "must be a list"}]},
        )
    errors: list[dict[str, Any]] = []
    points: list[dict[str, Any]] = []
    starts: list[int] = []  # the first point's index in ``points`` of each expanded entry
    expanded: list[int] = []  # those entries' indexes in the body
    sizes: list[int] = []
    unexpanded = 0  # points of entries refused as a whole before their points were looked at
    for s, entry in enumerate(entries):
        problems = _entry_problems(entry)
        if problems:
            errors.extend({"series": s, "field": f, "message": m} for f, m in problems)
            if isinstance(entry, dict) and isinstance(entry.get("values"), list):
                unexpanded += len(entry["values"])
            continue
        starts.append(len(points))
        expanded.append(s)
        sizes.append(len(entry["values"]))
        identity = {
            "component": entry.get("component"),
            "metric_name": entry.get("metric_name"),
            "labels": entry.get("labels"),
        }
        points.extend(
            {**identity, "value": v, "timestamp": _NO_TIME if t is None else t}
            for v, t in zip(entry["values"], entry["timestamps"], strict=True)
        )
    total = len(points) + unexpanded
    if not total and not errors:
        raise ValidationFailed(
            "the batch is empty", details={"fields": [{"field": "series", "message": "at least one point"}]}
        )
    if total > MAX_BATCH:
        raise ValidationFailed(
            f"at most {MAX_BATCH} points per batch",
            details={"fields": [{"field": "series", "message": f"{total} points > {MAX_BATCH}"}]},
        )
    bad_points = unexpanded
    batch = None
    if points:
        try:
            batch = check_points(points, now=now)
        except ValidationFailed as exc:
            point_errors = exc.details["errors"]
            bad_points += exc.details["invalid_points"]
            errors.extend(_by_entry(point_errors, starts, expanded))
    if errors or batch is None:
        errors.sort(key=lambda e: (e["series"], e.get("index", -1)))
        raise ValidationFailed(
            f"{bad_points} of {total} points are invalid; nothing was stored",
            details={"errors": errors, "invalid_points": bad_points, "total_points": total},
        )
    sids = batch.sids
    batch.entries = [(sids[start], size) for start, size in zip(starts, sizes, strict=True)]
    return batch


def _entry_problems(entry: Any) -> list[tuple[str, str]]:
    """What is wrong with an entry's own shape (not with its points)."""
    if type(entry) is not dict:
        return [("series", "must be an object")]
    problems = []
    if not SERIES_FIELDS.issuperset(entry):
        problems.append(("series", f"unknown fields {sorted(set(entry) - SERIES_FIELDS)[:5]}"))
    values, times = entry.get("values"), entry.get("timestamps")
    if type(values) is not list:
        problems.append(("values", "must be a list of numbers"))
    elif not values:
        problems.append(("values", "at least one value"))
    if type(times) is not list:
        problems.append(("timestamps", "must be a list of ISO 8601 strings or epoch seconds"))
    elif type(values) is list and len(times) != len(values):
        problems.append(("timestamps", f"{len(times)} timestamps for {len(values)} values"))
    return problems


def _by_entry(point_errors: list[dict[str, Any]], starts: list[int], expanded: list[int]) -> list[dict]:
    """``check_points``' errors (index into the expanded points) named by entry and point; a problem
    of the entry's identity (component, metric name, labels) once per entry."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[int, str]] = set()
    for error in point_errors:
        at = bisect_right(starts, error["index"]) - 1
        s, field = expanded[at], error["field"]
        if field in _ENTRY_FIELDS or field.startswith("labels"):
            if (s, field) not in seen:
                seen.add((s, field))
                out.append({"series": s, "field": field, "message": error["message"]})
        else:
            out.append(
                {
                    "series": s,
                    "index": error["index"] - starts[at],
                    "field": _RENAMED.get(field, field),
                    "message": error["message"],
                }
            )
    return out
