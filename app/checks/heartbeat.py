"""`heartbeat` check: jobs push pings (healthchecks.io style); this module only *evaluates* the
stored ping state. Receiving pings and storing them is the API's job.

Semantics of `evaluate_heartbeat` (first matching rule wins):

1. Never pinged: UP ("waiting for the first heartbeat") until `period_s + grace_s` after the check
   was created, DOWN after that.
2. A run is in progress (last ping is `start`): DOWN when it has run longer than `max_runtime_s`;
   without `max_runtime_s`, DOWN when no finish arrived within `period_s + grace_s` of the start;
   UP ("running") otherwise.
3. Last ping is `fail`: DOWN.
4. Late: the last ping is older than `period_s + grace_s`: DOWN. Within the grace it is still UP
   (the grace exists to absorb a job's normal jitter, so it must not flap to degraded).
5. The last finished run (`last_duration_s`, reported by the job or computed by the API from its
   start ping) was shorter than `min_runtime_s` or longer than `max_runtime_s`: DOWN, conclusive
   like a `fail` (the run's own verdict: unhealthy at once, no streak of failed checks needed).
6. Otherwise UP.

A ping without a status counts as `success`.

Scheduled heartbeats (`schedule`: a cron expression, `tz`: an IANA zone, default UTC) replace
`period` with the schedule: a ping is expected at each scheduled time. Wherever the rules above
say "within `period_s + grace_s` of X", a schedule says "before the first scheduled time after X,
plus `grace_s`": a job that pinged at 02:00:40 for its 02:00 run is next due at the following
scheduled time. A run that started and has no `max_runtime_s` must finish before the next
scheduled time plus the grace.

While a recovery action is being verified (``action_at``: when it started; ``verify_until``: the
end of its verification window, None while the action still runs), only the pings received since
``action_at`` are judged (a rerun is judged on itself, never on the failure that caused it):

- no ping since the action: no verdict yet ("waiting", ``pending``) until ``verify_until``, DOWN after;
- a ``start`` since the action: no verdict yet ("running", ``pending``) until the run's allowed end
  (``run_deadline``: ``max_runtime_s``, else ``period_s + grace_s``, or the schedule's next time plus
  the grace), DOWN after it (rule 2);
- a ``fail`` (or a non-zero exit code) since the action: DOWN, conclusive (rule 3); the health state
  machine ends the recovery grace on it, so the action fails at once (docs/LIFECYCLE.md rule 2);
- a success since the action: rules 4-6 (a verdict: UP verifies the action); a run outside
  ``min_runtime_s``/``max_runtime_s`` (rule 5) is DOWN and conclusive like a ``fail``. Its duration is
  the job's own (``duration_seconds``, or from its ``/start`` since the action): the ping API records
  none from a ``/start`` older than the action in flight (``app/healing/reruns.py``).

A ping that names its run (a ping URL's ``?rid=``) is timed from that run's own ``/start``; a finish
of a run that started before the action in flight never reaches this state (the ping API stores it
without a verdict), so it neither fails nor verifies the rerun.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from app.checks.base import (
    CheckConfigError,
    CheckContext,
    CheckKind,
    CheckResult,
    ConfigErrors,
    Outcome,
    opt_number,
    require_mapping,
    short,
    utcnow,
)
from app.core import cron

PING_STATUSES = ("start", "success", "fail")
DEFAULT_GRACE_S = 60.0


@dataclass(frozen=True)
class HeartbeatState:
    """What the database knows about a component's pings."""

    created_at: datetime
    last_ping_at: datetime | None = None
    last_ping_status: str | None = None
    last_start_at: datetime | None = None
    last_duration_s: float | None = None
    # A recovery action on the component is in flight: it started at ``action_at``; its verification
    # window ends at ``verify_until`` (None while the action itself runs).
    action_at: datetime | None = None
    verify_until: datetime | None = None


def _secs(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"


_DURATION_ALIASES = {
    "period": "period_s",
    "grace": "grace_s",
    "max_runtime": "max_runtime_s",
    "min_runtime": "min_runtime_s",
}


def _accept_durations(params: Mapping[str, Any], errs: ConfigErrors) -> dict[str, Any]:
    """People write ``period: 1h``; the evaluator wants ``period_s: 3600``. Accept both spellings."""
    from app.config.settings import parse_duration

    out = dict(params)
    for alias, key in _DURATION_ALIASES.items():
        if alias in out:
            value = out.pop(alias)
            if key in out:
                errs.add(alias, f"give either {alias} or {key}, not both")
                continue
            try:
                out[key] = parse_duration(value)
            except ValueError as exc:
                errs.add(alias, str(exc))
    return out


def validate_heartbeat_params(params: Mapping[str, Any]) -> dict[str, Any]:
    params = require_mapping(params)
    errs = ConfigErrors()
    params = _accept_durations(params, errs)
    period = opt_number(errs, params, "period_s", minimum=1)
    schedule, tz = params.get("schedule"), params.get("tz")
    if schedule is not None:
        if period is not None:
            errs.add("schedule", "give either schedule or period, not both")
        elif problem := cron.cron_problem(schedule):
            errs.add("schedule", problem)
        tz = "UTC" if tz is None else tz
        if problem := cron.zone_problem(tz):
            errs.add("tz", problem)
    elif tz is not None:
        errs.add("tz", "only applies to a schedule")
    elif period is None:
        errs.add("period_s", "is required (or a cron schedule)")
    out = {
        "period_s": period,
        "grace_s": opt_number(errs, params, "grace_s", default=DEFAULT_GRACE_S, minimum=0),
        "max_runtime_s": opt_number(errs, params, "max_runtime_s", minimum=0.001),
        "min_runtime_s": opt_number(errs, params, "min_runtime_s", minimum=0),
    }
    if schedule is not None:
        out["schedule"], out["tz"] = " ".join(str(schedule).split()), tz
    errs.raise_if_any()
    min_rt, max_rt = out["min_runtime_s"], out["max_runtime_s"]
    if min_rt is not None and max_rt is not None and min_rt >= max_rt:
        raise CheckConfigError("check.min_runtime_s: must be smaller than max_runtime_s")
    return out


def evaluate_heartbeat(
    params: Mapping[str, Any],
    *,
    now: datetime,
    last_ping_at: datetime | None,
    last_ping_status: str | None,
    last_start_at: datetime | None,
    last_duration_s: float | None,
    created_at: datetime,
    action_at: datetime | None = None,
    verify_until: datetime | None = None,
) -> CheckResult:
    """Outcome of a heartbeat check at `now` (all datetimes UTC-aware). See the module docstring.
    Raises CheckConfigError for invalid params."""
    p = validate_heartbeat_params(params)
    if action_at is not None and (last_ping_at is None or last_ping_at < action_at):
        return _no_run_since(now, action_at, verify_until)
    evaluate = _evaluate_scheduled if p.get("schedule") else _evaluate_periodic
    result = evaluate(
        p,
        now=now,
        last_ping_at=last_ping_at,
        last_ping_status=last_ping_status,
        last_start_at=last_start_at,
        last_duration_s=last_duration_s,
        created_at=created_at,
    )
    if action_at is not None and last_ping_status == "start" and result.outcome is Outcome.UP:
        # The run the action started is within its allowed runtime: running, not verified yet.
        result.pending = True
        result.detail = short(f"{result.detail}, started since the recovery action")
    return result


def _no_run_since(now: datetime, action_at: datetime, verify_until: datetime | None) -> CheckResult:
    """No ping since the recovery action started: no verdict until its verification window ends."""
    ago = _secs(max(0.0, (now - action_at).total_seconds()))
    if verify_until is not None and now > verify_until:
        return CheckResult.down(
            f"no ping since the recovery action started {ago} ago (its verification window is over)",
            None,
            observed_at=now,
        )
    return CheckResult.up(
        f"waiting for the first ping since the recovery action started {ago} ago",
        None,
        observed_at=now,
        pending=True,
    )


def run_deadline(params: Mapping[str, Any], started_at: datetime) -> datetime:
    """Until when a run that pinged ``start`` at ``started_at`` may run before it counts as failed
    (rule 2): ``max_runtime_s``, else ``period_s + grace_s``, or the next scheduled time plus the grace."""
    p = validate_heartbeat_params(params)
    if p["max_runtime_s"] is not None:
        return started_at + timedelta(seconds=p["max_runtime_s"])
    if p.get("schedule"):
        return cron.next_after(p["schedule"], p["tz"], started_at) + timedelta(seconds=p["grace_s"])
    return started_at + timedelta(seconds=p["period_s"] + p["grace_s"])


def _outside_runtime(
    p: Mapping[str, Any], now: datetime, last_duration_s: float | None
) -> CheckResult | None:
    """Rule 5: DOWN when the last finished run was shorter than ``min_runtime_s`` or longer than
    ``max_runtime_s``; conclusive: the run's length is its own verdict, as final as a ``fail`` ping (no
    streak needed, no grace waits it out, docs/LIFECYCLE.md rule 12)."""
    if last_duration_s is None:
        return None
    min_rt, max_rt = p["min_runtime_s"], p["max_runtime_s"]
    if min_rt is not None and last_duration_s < min_rt:
        detail = f"last run took {_secs(last_duration_s)}, shorter than min_runtime {_secs(min_rt)}"
    elif max_rt is not None and last_duration_s > max_rt:
        detail = f"last run took {_secs(last_duration_s)}, longer than max_runtime {_secs(max_rt)}"
    else:
        return None
    return CheckResult.down(detail, None, observed_at=now, conclusive=True)


def _evaluate_periodic(
    p: Mapping[str, Any],
    *,
    now: datetime,
    last_ping_at: datetime | None,
    last_ping_status: str | None,
    last_start_at: datetime | None,
    last_duration_s: float | None,
    created_at: datetime,
) -> CheckResult:
    """The module docstring's rules with a period."""
    period, grace = p["period_s"], p["grace_s"]
    max_rt = p["max_runtime_s"]
    allowed = period + grace

    def result(factory: Any, detail: str) -> CheckResult:
        return factory(detail, None, observed_at=now)

    if last_ping_at is None:
        waited = (now - created_at).total_seconds()
        if waited > allowed:
            return result(
                CheckResult.down,
                f"no heartbeat received in {_secs(waited)} since the check was created "
                f"(expected every {_secs(period)} + {_secs(grace)} grace)",
            )
        return result(
            CheckResult.up, f"waiting for the first heartbeat (due within {_secs(allowed - waited)})"
        )

    status = last_ping_status or "success"
    if status == "start":
        started = max(filter(None, (last_start_at, last_ping_at)))
        running = (now - started).total_seconds()
        if max_rt is not None and running > max_rt:
            return result(
                CheckResult.down,
                f"run started {_secs(running)} ago has not finished (max_runtime {_secs(max_rt)})",
            )
        if max_rt is None and running > allowed:
            return result(
                CheckResult.down,
                f"run started {_secs(running)} ago has not finished "
                f"(expected within {_secs(period)} + {_secs(grace)} grace)",
            )
        return result(CheckResult.up, f"run in progress for {_secs(running)}")

    if status == "fail":
        ago = (now - last_ping_at).total_seconds()
        return CheckResult.down(
            f"last run reported failure {_secs(ago)} ago", None, observed_at=now, conclusive=True
        )

    since = (now - last_ping_at).total_seconds()
    if since > allowed:
        return result(
            CheckResult.down,
            f"late: last heartbeat {_secs(since)} ago "
            f"(expected every {_secs(period)} + {_secs(grace)} grace)",
        )

    outside = _outside_runtime(p, now, last_duration_s)
    if outside is not None:
        return outside

    if since > period:
        return result(CheckResult.up, f"heartbeat due {_secs(since - period)} ago, within the grace")
    return result(CheckResult.up, f"last heartbeat {_secs(since)} ago")


def _evaluate_scheduled(
    p: Mapping[str, Any],
    *,
    now: datetime,
    last_ping_at: datetime | None,
    last_ping_status: str | None,
    last_start_at: datetime | None,
    last_duration_s: float | None,
    created_at: datetime,
) -> CheckResult:
    """The module docstring's rules with a cron schedule in place of the period."""
    schedule, tz, grace = p["schedule"], p["tz"], p["grace_s"]
    max_rt = p["max_runtime_s"]

    def due_after(moment: datetime) -> datetime:
        return cron.next_after(schedule, tz, moment)

    def when(moment: datetime) -> str:
        return cron.describe(moment, tz)

    def result(factory: Any, detail: str) -> CheckResult:
        return factory(detail, None, observed_at=now)

    if last_ping_at is None:
        due = due_after(created_at)
        if (now - due).total_seconds() > grace:
            return result(
                CheckResult.down,
                f"missed the run scheduled at {when(due)}: no heartbeat received ({_secs(grace)} grace)",
            )
        return result(CheckResult.up, f"waiting for the first heartbeat (run scheduled at {when(due)})")

    status = last_ping_status or "success"
    if status == "start":
        started = max(filter(None, (last_start_at, last_ping_at)))
        running = (now - started).total_seconds()
        if max_rt is not None and running > max_rt:
            return result(
                CheckResult.down,
                f"run started {_secs(running)} ago has not finished (max_runtime {_secs(max_rt)})",
            )
        due = due_after(started)
        if max_rt is None and (now - due).total_seconds() > grace:
            return result(
                CheckResult.down,
                f"run started {_secs(running)} ago has not finished before the "
                f"next run scheduled at {when(due)} ({_secs(grace)} grace)",
            )
        return result(CheckResult.up, f"run in progress for {_secs(running)}")

    if status == "fail":
        ago = (now - last_ping_at).total_seconds()
        return CheckResult.down(
            f"last run reported failure {_secs(ago)} ago", None, observed_at=now, conclusive=True
        )

    due = due_after(last_ping_at)
    late = (now - due).total_seconds()
    if late > grace:
        return result(
            CheckResult.down,
            f"missed the run scheduled at {when(due)} (last heartbeat "
            f"{_secs((now - last_ping_at).total_seconds())} ago, {_secs(grace)} grace)",
        )
    outside = _outside_runtime(p, now, last_duration_s)
    if outside is not None:
        return outside
    if late > 0:
        return result(CheckResult.up, f"run scheduled at {when(due)} is due, within the grace")
    return result(CheckResult.up, f"next run scheduled at {when(due)}")


class HeartbeatCheck(CheckKind):
    name: ClassVar[str] = "heartbeat"
    passive: ClassVar[bool] = True
    # Spellings validate() accepts and turns into another key (``period: 1h`` -> ``period_s: 3600``).
    aliases: ClassVar[frozenset[str]] = frozenset(_DURATION_ALIASES)

    def validate(self, params: Mapping[str, Any], ctx: CheckContext | None = None) -> dict[str, Any]:  # noqa: ARG002  CheckType.validate interface; heartbeat params need no context
        return validate_heartbeat_params(params)

    async def probe(self, params: dict[str, Any], ctx: CheckContext) -> CheckResult:
        state = ctx.heartbeat
        if state is None:
            return CheckResult.down("no heartbeat state available for this component")
        if state.last_ping_status not in (None, *PING_STATUSES):
            return CheckResult.down(f"unknown heartbeat status {state.last_ping_status!r}")
        return evaluate_heartbeat(
            params,
            now=ctx.now or utcnow(),
            last_ping_at=state.last_ping_at,
            last_ping_status=state.last_ping_status,
            last_start_at=state.last_start_at,
            last_duration_s=state.last_duration_s,
            created_at=state.created_at,
            action_at=state.action_at,
            verify_until=state.verify_until,
        )
