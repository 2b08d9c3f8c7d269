"""Instants a request may name: with an offset, and representable in UTC (what every column holds)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime


def aware_utc(value: datetime | None) -> datetime | None:
    """``value`` in UTC; a ValueError (a 422 naming the field) when it has no offset, or when its
    offset moves it out of the calendar (``0001-01-01T00:00:00+14:00`` is in year 0 in UTC)."""
    if value is None:
        return None
    if value.utcoffset() is None:
        raise ValueError("must carry a time zone offset, such as 2026-01-31T12:00:00Z or +02:00")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range (years 1 to 9999 in UTC)") from None


# A date-time in a request body.
UtcDateTime = Annotated[AwareDatetime, AfterValidator(aware_utc)]
