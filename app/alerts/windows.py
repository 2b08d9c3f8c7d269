"""Maintenance windows: when a silence is open.

A one-off silence is open for [starts_at, ends_at). A recurring one (``schedule``, a cron expression
in ``tz``, with ``duration_seconds``) is open from each time the schedule matches for the duration,
between starts_at and ends_at (the recurrence's own bounds; "forever" when not given). Checks keep
running inside a window: it only mutes notifications and pauses healing for what it matches.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from app.core import cron
from app.core.errors import ValidationFailed

# The end of a recurrence nobody bounded (far enough, and representable on both dialects).
FOREVER = datetime(9999, 12, 31, tzinfo=UTC)
MAX_DURATION_S = 31 * 86400.0  # a duration, and how long a one-off silence mutes from its start or now
MAX_AHEAD_S = (
    366 * 86400.0
)  # how far from now a silence may start, ahead (a window planned a year out) or back


def open_window(silence: Any, at: datetime) -> tuple[datetime, datetime] | None:
    """(start, end) of the window of ``silence`` open at ``at``, or None."""
    if not (silence.starts_at <= at < silence.ends_at):
        return None
    if not silence.schedule:
        return silence.starts_at, silence.ends_at
    start = cron.last_at_or_before(silence.schedule, silence.tz or "UTC", at)
    end = start + timedelta(seconds=silence.duration_seconds or 0)
    if at >= end:
        return None
    return max(start, silence.starts_at), min(end, silence.ends_at)


def next_window(silence: Any, at: datetime) -> tuple[datetime, datetime] | None:
    """The next window that opens after ``at`` (None for a one-off, or past the recurrence's end)."""
    if not silence.schedule:
        return None
    start = cron.next_after(
        silence.schedule, silence.tz or "UTC", max(at, silence.starts_at - timedelta(seconds=1))
    )
    if start >= silence.ends_at:
        return None
    return start, min(start + timedelta(seconds=silence.duration_seconds or 0), silence.ends_at)


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"invalid maintenance window: {field} {message}",
        details={"fields": [{"field": field, "message": message}]},
    )


def plan(
    *,
    starts_at: datetime | None,
    ends_at: datetime | None,
    duration: float | None,
    schedule: str | None,
    tz: str | None,
    now: datetime,
) -> dict[str, Any]:
    """Validated columns of a silence: a one-off (ends_at, or a duration from its start) or a
    recurring window (schedule + duration, optionally bounded by starts_at/ends_at)."""
    starts_at = starts_at or now
    if duration is not None and not 0 < duration <= MAX_DURATION_S:
        raise _invalid("duration", f"must be between 0 and {MAX_DURATION_S / 86400:.0f} days")
    if abs(starts_at - now) > timedelta(seconds=MAX_AHEAD_S):
        raise _invalid("starts_at", f"must be within {MAX_AHEAD_S / 86400:.0f} days of now")
    if schedule is None:
        if tz is not None:
            raise _invalid("tz", "only applies to a recurring window (give a schedule)")
        if ends_at is None:
            if duration is None:
                raise _invalid("ends_at", "give ends_at or a duration")
            ends_at = starts_at + timedelta(seconds=duration)
        elif duration is not None:
            raise _invalid("duration", "give either ends_at or a duration, not both")
        if ends_at <= starts_at:
            raise _invalid("ends_at", "must be after starts_at")
        if ends_at <= now:
            raise _invalid("ends_at", "must be in the future")
        if ends_at - max(starts_at, now) > timedelta(seconds=MAX_DURATION_S):
            raise _invalid(
                "ends_at",
                f"a one-off silence lasts at most {MAX_DURATION_S / 86400:.0f} days from its start "
                "(a recurring window or disabling the component lasts longer)",
            )
        return {
            "starts_at": starts_at,
            "ends_at": ends_at,
            "schedule": None,
            "tz": None,
            "duration_seconds": None,
        }
    if problem := cron.cron_problem(schedule):
        raise _invalid("schedule", problem)
    tz = tz or "UTC"
    if problem := cron.zone_problem(tz):
        raise _invalid("tz", problem)
    if duration is None:
        raise _invalid("duration", "is required for a recurring window (how long each one stays open)")
    ends_at = ends_at or FOREVER
    if ends_at <= starts_at or ends_at <= now:
        raise _invalid("ends_at", "the recurrence must end in the future, after it starts")
    return {
        "starts_at": starts_at,
        "ends_at": ends_at,
        "schedule": " ".join(schedule.split()),
        "tz": tz,
        "duration_seconds": float(duration),
    }


async def sync_declared_windows(state: Any) -> dict[str, list[str]]:
    """The config file's ``maintenance:`` windows become silences with ``source: config``, found
    again by name: created, updated when the file changed, ended when no longer declared."""
    import logging

    from sqlalchemy import select

    from app.db.models import Silence
    from app.db.session import session_scope
    from app.db.types import utcnow

    report: dict[str, list[str]] = {"created": [], "updated": [], "ended": []}
    declared = {w.name: w for w in state.settings.maintenance}
    now = utcnow()
    async with session_scope(state.sessionmaker) as session:
        rows = {
            s.name: s
            for s in (await session.execute(select(Silence).where(Silence.name.is_not(None)))).scalars()
            if s.name is not None
        }  # the query's filter, for the type checker
        for name, decl in declared.items():
            wanted = {
                "component": decl.component or None,
                "labels": dict(decl.labels),
                "schedule": decl.schedule,
                "tz": decl.tz,
                "duration_seconds": float(decl.duration),
                "comment": decl.comment,
                "source": "config",
            }
            existing = rows.get(name)
            if existing is None:
                columns = plan(
                    starts_at=None,
                    ends_at=None,
                    duration=decl.duration,
                    schedule=decl.schedule,
                    tz=decl.tz,
                    now=now,
                )
                session.add(Silence(name=name, created_by="config", **{**wanted, **columns}))
                report["created"].append(name)
                continue
            wanted["ends_at"] = FOREVER  # declared: the recurrence runs until the file drops it
            changed = {k: v for k, v in wanted.items() if getattr(existing, k) != v}
            if changed:
                if existing.source != "config":
                    logging.getLogger("pipeline_guard.alerts").warning(
                        "maintenance window %r is now declared in the configuration; the file owns it", name
                    )
                for key, value in changed.items():
                    setattr(existing, key, value)
                report["updated"].append(name)
        for name, silence in rows.items():
            if name not in declared and silence.source == "config" and silence.ends_at > now:
                silence.ends_at = max(now, silence.starts_at)
                report["ended"].append(name)
        await session.flush()
    return report
