"""What readers see of the rollup levels: each row in its own bucket, and a fresh minute delta not yet
compacted also in its ten-minute and hour buckets (the coarser levels do not hold it yet; the
summary folds it in). Compaction must leave this view unchanged."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select

from app.db.models import MetricRollup
from app.metrics.rollups import COARSE_RESOLUTIONS, MINUTE, is_fresh


def _add(buckets: dict, key: tuple, count: int, total: float, lo: float, hi: float) -> None:
    c, t, a, b = buckets.get(key, (0, 0.0, lo, hi))
    buckets[key] = (c + count, t + total, min(a, lo), max(b, hi))


async def totals(guard) -> dict:
    """Per bucket as readers see it: (count, sum, min, max); plus the row and pending counts."""
    m = MetricRollup
    async with guard.session() as s:
        rows = (
            await s.execute(
                select(
                    m.resolution,
                    m.component,
                    m.metric_name,
                    m.series_key,
                    m.bucket_start,
                    m.count,
                    m.sum,
                    m.min,
                    m.max,
                    m.compacted,
                    m.sketch,
                )
            )
        ).all()
        n_rows = (await s.execute(select(func.count()).select_from(m))).scalar_one()
    buckets: dict[tuple, tuple] = {}
    pending = 0
    for res, comp, name, key, at, count, total, lo, hi, compacted, sketch in rows:
        pending += not compacted
        _add(buckets, (res, comp, name, key, at), count, total, lo, hi)
        if res == MINUTE and not compacted and is_fresh(bytes(sketch)):
            for coarse in COARSE_RESOLUTIONS:
                start = datetime.fromtimestamp(at.timestamp() // coarse * coarse, UTC)
                _add(buckets, (coarse, comp, name, key, start), count, total, lo, hi)
    rounded = {k: (c, round(t, 6), lo, hi) for k, (c, t, lo, hi) in buckets.items()}
    return {"buckets": rounded, "rows": n_rows, "pending": pending}
