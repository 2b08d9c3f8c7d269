"""Cron schedules in an IANA time zone (heartbeat schedules, recurring maintenance windows).

`cronsim` (the library healthchecks.io wrote for exactly this) does the matching: five fields,
`L`, `W`, `#`, names of days and months, and daylight-saving transitions handled the way cron
does. Times go in and come out as aware UTC datetimes; the zone only decides which wall-clock
minutes match.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

MAX_EXPRESSION = 200


def cron_problem(expression: object) -> str | None:
    """Why `expression` is not a usable cron expression, or None."""
    if not isinstance(expression, str) or not expression.strip():
        return "must be a cron expression like '0 2 * * *'"
    if len(expression) > MAX_EXPRESSION:
        return f"must be at most {MAX_EXPRESSION} characters"
    if len(expression.split()) != 5:
        return "must have five fields (minute hour day-of-month month day-of-week)"
    try:
        CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        return f"is not a valid cron expression ({exc})"
    return None


def zone_problem(tz: object) -> str | None:
    if not isinstance(tz, str) or not tz:
        return "must be an IANA time zone name like 'UTC' or 'Europe/Berlin'"
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {tz!r} (use an IANA name like 'UTC' or 'Europe/Berlin')"
    return None


def next_after(expression: str, tz: str, moment: datetime) -> datetime:
    """The first scheduled time strictly after `moment` (aware UTC)."""
    local = moment.astimezone(ZoneInfo(tz))
    return next(CronSim(expression, local)).astimezone(UTC)


def last_at_or_before(expression: str, tz: str, moment: datetime) -> datetime:
    """The latest scheduled time at or before `moment` (aware UTC)."""
    local = moment.astimezone(ZoneInfo(tz)) + timedelta(seconds=1)
    return next(CronSim(expression, local, reverse=True)).astimezone(UTC)


def describe(moment: datetime, tz: str) -> str:
    """A scheduled time as people read it in the schedule's zone."""
    local = moment.astimezone(ZoneInfo(tz))
    return local.strftime("%Y-%m-%d %H:%M") + ("" if tz == "UTC" else f" {tz}")
