"""A validated batch and its parts: ``Batch`` (columnar: per point a series index, a value and a
``Stamp``), ``Series`` (one distinct series, with its binary COPY fields), ``Stamp`` (one distinct
instant) and ``Point`` (one point as an object, for the consumers that want them). Built by the
decoders (``validation.check_points``, ``decode``, ``series_body``) and the check metrics.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from operator import attrgetter, le
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.metrics.columns import Columns


@dataclass(slots=True)
class Point:
    component: str
    metric_name: str
    series_key: str
    labels: dict[str, str]
    labels_json: str
    value: float
    ts: datetime
    minute: int  # start of the point's minute, epoch seconds (rollup bucket)


_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_PACK_I32 = struct.Struct(">i").pack
_PACK_I64 = struct.Struct(">q").pack
_LEN8 = _PACK_I32(8)


@dataclass(slots=True)
class Stamp:
    """One distinct timestamp of a batch (points of one scrape share it): parsed once."""

    ts: datetime
    minute: int  # start of the minute, epoch seconds (rollup bucket)
    micros: int  # microseconds since 2000-01-01 UTC: Postgres' binary timestamptz, and an exact sort key
    copy_field: bytes  # length-prefixed binary COPY field


def make_stamp(ts: datetime) -> Stamp:
    micros = (ts - _PG_EPOCH) // _ONE_US
    return Stamp(ts, int(ts.timestamp()) // 60 * 60, micros, _LEN8 + _PACK_I64(micros))


def stamp_at(micros: int) -> Stamp:
    """The ``Stamp`` of microseconds since 2000-01-01 UTC (``Stamp.micros``)."""
    return make_stamp(_PG_EPOCH + timedelta(microseconds=micros))


def _copy_text(value: str) -> bytes:
    data = value.encode()
    return _PACK_I32(len(data)) + data


@dataclass(slots=True)
class Series:
    """One distinct (component, metric, canonical labels) of a batch."""

    component: str
    metric_name: str
    series_key: str
    labels: dict[str, str]
    labels_json: str
    # A binary COPY row's fields up to the value (``copy_stream``): the field count, the four
    # text/jsonb fields, the value's length.
    copy_fields: bytes = b""

    def __post_init__(self) -> None:
        self.copy_fields = self._encoded_fields(0)

    def padded_copy_fields(self, width: int) -> bytes:
        """``copy_fields`` at least ``width`` bytes long: spaces after the labels' JSON text, which
        jsonb's input skips (the stored labels are the same)."""
        pad = width - len(self.copy_fields)
        return self._encoded_fields(pad) if pad > 0 else self.copy_fields

    def _encoded_fields(self, pad: int) -> bytes:
        js = self.labels_json.encode() + b" " * pad
        return b"".join(
            (
                b"\x00\x06",
                _copy_text(self.component),
                _copy_text(self.metric_name),
                _copy_text(self.series_key),
                _PACK_I32(len(js) + 1),
                b"\x01",
                js,
                _LEN8,
            )
        )


class Batch:
    """A validated batch, kept columnar: per point only a series index, a value and a ``Stamp``
    (shared by every point of the same timestamp). ``points()`` builds ``Point`` objects for the
    consumers that want them (SQLite executemany, the rule evaluator); the Postgres path never does.

    A batch decoded from the series shape (``series_body``) is born as numpy columns
    (``from_columns``): its per-point lists are then built only if a consumer asks for them (SQLite,
    the rule evaluator), never on the Postgres path. ``entries`` is that body's (series index, number
    of points) per series entry, in body order, so that a rejection can name the entry."""

    __slots__ = ("_columns", "_sids", "_stamps", "_values", "entries", "series")

    def __init__(self, series: list[Series], sids: list[int], values: list[float], stamps: list[Stamp]):
        self.series = series
        self._sids: list[int] | None = sids
        self._values: list[float] | None = values
        self._stamps: list[Stamp] | None = stamps
        self._columns: Columns | None = None
        self.entries: list[tuple[int, int]] | None = None

    @classmethod
    def from_columns(
        cls, series: list[Series], columns: Columns, entries: list[tuple[int, int]] | None = None
    ) -> Batch:
        batch = cls.__new__(cls)
        batch.series, batch._columns, batch.entries = series, columns, entries
        batch._sids = batch._values = batch._stamps = None
        return batch

    @property
    def sids(self) -> list[int]:
        if self._sids is None:
            self._sids = self.columns().sids.tolist()
        return self._sids

    @property
    def values(self) -> list[float]:
        if self._values is None:
            self._values = self.columns().values.tolist()
        return self._values

    @property
    def stamps(self) -> list[Stamp]:
        if self._stamps is None:
            from app.metrics.columns import stamps_of

            self._stamps = stamps_of(self.columns().micros)
        return self._stamps

    def value_and_time(self, index: int) -> tuple[float, datetime]:
        """The value and time of one point (each series' latest), without building the lists."""
        if self._stamps is None:
            columns = self.columns()
            return float(columns.values[index]), stamp_at(int(columns.micros[index])).ts
        return self.values[index], self._stamps[index].ts

    def __len__(self) -> int:
        return len(self._sids) if self._sids is not None else len(self.columns().sids)

    @property
    def components(self) -> set[str]:
        return {s.component for s in self.series}

    def points(self, keep: Callable[[Series], bool] | None = None) -> list[Point]:
        """``Point`` objects, in batch order; only those of the series ``keep`` accepts, if given."""
        series = self.series
        rows: Iterable[tuple[Series, float, Stamp]] = zip(
            map(series.__getitem__, self.sids), self.values, self.stamps, strict=True
        )
        if keep is not None:
            chosen = {id(s) for s in series if keep(s)}
            if len(chosen) < len(series):
                rows = (row for row in rows if id(row[0]) in chosen)
        return [
            Point(s.component, s.metric_name, s.series_key, s.labels, s.labels_json, v, st.ts, st.minute)
            for s, v, st in rows
        ]

    def copy_payload(self) -> memoryview:
        """The whole batch as one PostgreSQL binary COPY stream (columns ``POINT_COLUMNS``)."""
        from app.metrics.copy_stream import points_copy_stream

        return points_copy_stream(self)

    def columns(self) -> Columns:
        """The points as numpy columns (``columns.Columns``, read-only), built on first use and kept:
        the COPY stream, the rollup deltas and ``latest`` share them (a batch's lists do not change
        once it is built)."""
        if self._columns is None:
            from app.metrics.columns import batch_columns

            self._columns = batch_columns(self)
        return self._columns

    def latest(self) -> dict[int, int]:
        """Series index -> index of its latest point (the later one on equal timestamps). In numpy
        when the batch's columns are built (every batch that builds rollup deltas or a COPY stream:
        ~3 against ~60 ns per point), else in Python (a small batch need not import numpy for it)."""
        if self._columns is not None:
            from app.metrics.columns import latest_points

            return dict(zip(*latest_points(self._columns, len(self.series)), strict=True))
        micros = list(map(_MICROS, self.stamps))
        if all(map(le, micros, islice(micros, 1, None))):  # in time order (the usual case)
            return {sid: i for i, sid in enumerate(self.sids)}
        best: dict[int, int] = {}
        top: dict[int, int] = {}
        get = top.get
        for i, (sid, us) in enumerate(zip(self.sids, micros, strict=True)):
            if us >= get(sid, -(1 << 62)):
                top[sid] = us
                best[sid] = i
        return best


_MICROS = attrgetter("micros")
