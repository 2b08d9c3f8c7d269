"""A batch's points as numpy columns, built once per batch and shared by its consumers.

The Postgres path reads the same per-point columns three times (the points' COPY stream, the rollup
deltas, each series' latest point); converting the batch's Python lists once instead of per consumer
saves two ``np.fromiter`` over the values and series indexes and one pass over the stamps, and the
minutes are derived from the microseconds in numpy. Imported only where numpy is wanted (not at the
CLI's or the app's import).
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from app.metrics.batch import Batch, Stamp

_MICROS = attrgetter("micros")
# Postgres' epoch (2000-01-01 UTC) in Unix seconds: a whole number of minutes (15,778,080).
_PG_EPOCH_S = 946_684_800
_MINUTE_US = 60_000_000


@dataclass(frozen=True, slots=True)
class Columns:
    """Per point, in batch order: series index, value, microseconds since 2000-01-01 UTC (``Stamp.micros``)
    and the start of its minute in Unix seconds (``Stamp.minute``)."""

    sids: Any  # intp
    values: Any  # float64
    micros: Any  # int64
    minutes: Any  # int64


def batch_columns(batch: Batch) -> Columns:
    """The columns of ``batch``, read-only (several consumers share them)."""
    n = len(batch)
    return columns_of(
        np.fromiter(batch.sids, dtype=np.intp, count=n),
        np.fromiter(batch.values, dtype=np.float64, count=n),
        np.fromiter(map(_MICROS, batch.stamps), dtype=np.int64, count=n),
    )


def columns_of(sids: Any, values: Any, micros: Any) -> Columns:
    """Read-only columns (several consumers share them) from per-point arrays: series indexes (intp),
    values (float64), microseconds since 2000-01-01 UTC (int64)."""
    # ``make_stamp``'s minute: the Unix time's floor to a minute (the epochs differ by whole minutes).
    columns = (sids, values, micros, micros // _MINUTE_US * 60 + _PG_EPOCH_S)
    for array in columns:
        array.flags.writeable = False
    return Columns(*columns)


def stamps_of(micros: Any) -> list[Stamp]:
    """A ``Stamp`` per point from its microseconds, one object per distinct instant (as the point
    format's decoders share them): for the consumers of a columnar batch that want Python objects."""
    from app.metrics.batch import stamp_at

    distinct, inverse = np.unique(micros, return_inverse=True)
    stamps = [stamp_at(us) for us in distinct.tolist()]
    return list(map(stamps.__getitem__, inverse.tolist()))


def latest_points(columns: Columns, nseries: int) -> tuple[list[int], list[int]]:
    """(series indexes, index of each one's latest point): the latest timestamp, and among points of
    the same series at that timestamp the last one in the batch. In any order of the points; no sort."""
    sids, micros = columns.sids, columns.micros
    top = np.full(nseries, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(top, sids, micros)
    at_top = micros == top[sids]
    best = np.full(nseries, -1, dtype=np.intp)
    np.maximum.at(best, sids[at_top], np.flatnonzero(at_top))
    present = np.flatnonzero(best >= 0)
    return present.tolist(), best[present].tolist()
