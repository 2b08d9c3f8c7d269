from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def point(component="etl", name="rows_processed", value=1.0, labels=None, ts: datetime | None = None) -> dict:
    body = {"component": component, "metric_name": name, "value": value, "labels": labels or {}}
    if ts is not None:
        body["timestamp"] = ts.isoformat()
    return body


def series(start: datetime, values, step: float = 1.0, **kw) -> list[dict]:
    return [point(value=v, ts=start + timedelta(seconds=i * step), **kw) for i, v in enumerate(values)]
