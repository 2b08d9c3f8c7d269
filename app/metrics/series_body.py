"""The series shape of a batch body: ``{"series": [{component, metric_name, labels, timestamps, values}]}``.

Pipelines push many points of few series; said once per series, the identity (component, metric,
labels) is parsed and checked once per series entry, and the timestamps and values arrive as arrays.
Two tiers, as for the point format (``decode``):

1. ``fast_series``: msgspec has already decoded the entries (values as a list of bounded floats,
   timestamps kept as raw JSON); the values and, for numeric timestamps, the times become numpy
   columns in whole-array steps (``Batch.from_columns``): no Python per point. Text timestamps are
   parsed once per distinct text. It never reports an error: on anything unexpected it declines.
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


class SeriesEntry(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    component: str
    metric_name: str
    timestamps: msgspec.Raw
    # msgspec refuses NaN/Infinity literals; the bound keeps the rollups' sum of squares finite.
    values: list[Annotated[float, msgspec.Meta(ge=-MAX_ABS_VALUE, le=MAX_ABS_VALUE)]]
    labels: msgspec.Raw = msgspec.Raw()


class Declined(Exception):
    """The fast path cannot vouch for this body; the thorough path decides."""


@functools.cache
def _time_decoders() -> tuple[Any, Any]:
    """Timestamps as numbers only (the fast case), and as any mix of texts and numbers."""
    return msgspec.json.Decoder(list[float]).decode, msgspec.json.Decoder(list[str | float]).decode


def fast_series(entries: list[SeriesEntry], now: datetime) -> Batch:
    """A columnar batch from decoded entries, or ``Declined``."""
    import numpy as np  # here, not at import: the CLI imports the decoders' module

    from app.metrics.columns import columns_of

    sizes = [len(e.values) for e in entries]
    total = sum(sizes)
    if not entries or not 0 < total <= MAX_BATCH or 0 in sizes:
        raise Declined
    numbers, mixed = _time_decoders()
    earliest_us, latest_us = make_stamp(now - MAX_AGE).micros, make_stamp(now + MAX_FUTURE).micros
    series: list[Series] = []
    by_raw: dict[tuple[str, str, bytes], int] = {}  # (component, name, labels as written) -> series index
    by_key: dict[tuple[str, str, str], int] = {}  # (component, name, canonical labels) -> series index
    text_micros: dict[Any, int] = {}  # a timestamp as written (text or number) -> microseconds
    entry_sids: list[int] = []
    seconds: list[list[float]] = []  # numeric timestamps, per entry (empty for an entry of texts)
    parsed: list[list[int]] = []  # microseconds of the entries with text timestamps, in entry order
    numeric: list[bool] = []
    for entry, size in zip(entries, sizes, strict=True):
        component, name, raw = entry.component, entry.metric_name, bytes(entry.labels)
        sid = by_raw.get((component, name, raw))
        if sid is None:
            sid = by_raw[(component, name, raw)] = _new_series(series, by_key, component, name, raw)
        entry_sids.append(sid)
        raw_ts = bytes(entry.timestamps)
        try:
            times: list[Any] = numbers(raw_ts)
            is_numeric = True
        except msgspec.DecodeError:
            times = mixed(raw_ts)  # (a DecodeError here declines the batch)
            is_numeric = False
        if len(times) != size:
            raise Declined
        numeric.append(is_numeric)
        if is_numeric:
            seconds.append(times)
        else:
            seconds.append([])
            parsed.append([_micros_of(t, text_micros, earliest_us, latest_us) for t in times])
    counts = np.asarray(sizes)
    sids = np.repeat(np.asarray(entry_sids, dtype=np.intp), counts)
    values = np.fromiter(chain.from_iterable(e.values for e in entries), dtype=np.float64, count=total)
    micros = np.empty(total, dtype=np.int64)
    is_numeric_point = np.repeat(np.asarray(numeric), counts)
    if any(numeric):
        flat = np.fromiter(chain.from_iterable(seconds), dtype=np.float64)
        micros[is_numeric_point] = _epoch_micros(np, flat, earliest_us, latest_us)
    if parsed:
        micros[~is_numeric_point] = np.fromiter(chain.from_iterable(parsed), dtype=np.int64)
    entries_at = list(zip(entry_sids, sizes, strict=True))
    return Batch.from_columns(series, columns_of(sids, values, micros), entries_at)


def _new_series(
    series: list[Series], by_key: dict[tuple[str, str, str], int], component: str, name: str, raw: bytes
) -> int:
    if not (valid_component(component) and valid_metric_name(name)):
        raise Declined
    labels: Any = {} if raw in _NO_LABELS else orjson.loads(raw)
    if type(labels) is not dict or (labels and label_problem(labels) is not None):
        raise Declined
    key = series_key(labels)
    sid = by_key.get((component, name, key))
    if sid is None:
        sid = by_key[(component, name, key)] = len(series)
        series.append(Series(component, name, key, labels, key or "{}"))
    return sid


def _micros_of(raw: Any, seen: dict[Any, int], earliest_us: int, latest_us: int) -> int:
    """A written timestamp's microseconds (parsed as the point format parses it), once per distinct one."""
    micros = seen.get(raw)
    if micros is None:
        try:
            micros = make_stamp(parse_time(raw)).micros
        except (ValueError, OverflowError, OSError):
            raise Declined from None
        if not earliest_us <= micros <= latest_us:
            raise Declined
        seen[raw] = micros
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
