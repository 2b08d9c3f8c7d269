"""Shared query parameters: limit/offset pagination and ``key=value`` label filters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Path, Query

from app.errors import ValidationFailed

MAX_PAGE = 1000


@dataclass
class Page:
    limit: int = Query(50, ge=1, le=MAX_PAGE, description=f"page size (at most {MAX_PAGE})")
    offset: int = Query(0, ge=0, le=10_000_000)


def parse_label_filters(values: list[str] | None) -> dict[str, str] | None:
    if not values:
        return None
    labels: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValidationFailed("invalid label filter", details={"fields": [{"field": "query.label", "message": f"expected key=value, got {item!r}"}]})
        labels[key] = value
    return labels


# Row ids are INTEGER columns on both dialects: refuse what cannot be an id before it reaches the driver.
MAX_ROW_ID = 2**31 - 1
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="row id")]
OptionalRowId = Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)]
