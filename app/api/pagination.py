"""Shared query parameters: limit/offset pagination and ``key=value`` label filters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import AfterValidator, BeforeValidator, StringConstraints

from app.core.errors import ValidationFailed
from app.core.instants import aware_utc

MAX_PAGE = 1000


@dataclass
class Page:
    limit: int = Query(50, ge=1, le=MAX_PAGE, description=f"page size (at most {MAX_PAGE})")
    offset: int = Query(0, ge=0, le=10_000_000)


# One label filter in a query string, "key=value" (what parse_label_filters accepts, documented).
LabelFilter = Annotated[str, StringConstraints(pattern=r"^[^=\x00]+=[^\x00]*$")]


def parse_label_filters(values: list[str] | None) -> dict[str, str] | None:
    if not values:
        return None
    labels: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValidationFailed(
                "invalid label filter",
                details={
                    "fields": [{"field": "query.label", "message": f"expected key=value, got {item!r}"}]
                },
            )
        labels[key] = value
    return labels


# Row ids are INTEGER columns on both dialects: refuse what cannot be an id before it reaches the driver.
MAX_ROW_ID = 2**31 - 1
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="row id")]


def _date_time_text(value: Any) -> Any:
    # pydantic would read "0.5" or 1700000000 as seconds since 1970; the API documents RFC 3339
    # date-times, so a bare number is refused rather than silently meaning January 1970.
    if isinstance(value, int | float) or (
        isinstance(value, str)
        and value.strip().lstrip("+-").replace(".", "", 1).replace("e", "", 1).replace("E", "", 1).isdigit()
    ):
        raise ValueError("must be an RFC 3339 date-time such as 2026-01-31T12:00:00Z, not a number")
    return value


# A date-time query parameter: RFC 3339 text only, with its offset, returned in UTC.
DateTimeQuery = Annotated[datetime | None, BeforeValidator(_date_time_text), AfterValidator(aware_utc)]
OptionalRowId = Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)]
