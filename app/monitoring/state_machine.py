"""The health state machine: pure, no I/O, no clock of its own (callers pass `now`).

Rules (first match wins), applied to every check result:

- During the grace period after a recovery action, failures do not count (they are not added to
  the failure streak nor to the flap window); successes do. The grace is the policy's
  ``grace_period`` and covers only the action's start-up: it ends at the first passing check, or
  at a *conclusive* failure (the component reported it itself: a batch job's rerun pinged ``fail``
  or a non-zero exit code), which counts at once, with no streak needed.
  ``success_threshold`` consecutive successes verify the recovery: ``recovering -> healthy``, and
  the flap window then keeps only those successes (what failed during the outage and the action
  must not make the healed component look flapping). When the component still fails after the
  grace, ``failure_threshold`` further results give ``recovering -> failed`` (all down) or
  ``recovering -> degraded`` (answering, but degraded). The incident lifecycle these follow is
  ``app/healing/lifecycle.py``.
- ``failure_threshold`` consecutive non-up results: ``critical`` when all of the last
  ``failure_threshold`` were down, ``degraded`` when some were only degraded.
- ``success_threshold`` consecutive up results: ``healthy`` — unless the component is flapping.
- Flapping (Monit's N-of-M): at least ``flap_threshold`` bad results among the last
  ``flap_window``. While flapping a healthy component becomes ``degraded`` and no status may
  *improve*; only worsening transitions happen, so alternating results cannot cause a storm.
  Once the window calms down, the usual success rule applies.
- While ``recovering``, flapping since the action (the same N-of-M, over the results after it) is a
  verdict too: ``recovering -> failed`` (the bad results all down) or ``-> degraded``; a target that
  alternates never meets either threshold in a row and would otherwise stay ``recovering``.
- Otherwise the status stays (hysteresis).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from app.checks.base import Outcome
from app.healing import lifecycle

UNKNOWN, HEALTHY, DEGRADED, CRITICAL, RECOVERING, FAILED = (
    "unknown",
    "healthy",
    "degraded",
    "critical",
    "recovering",
    "failed",
)
# Statuses during which an incident is open.
UNHEALTHY = frozenset({DEGRADED, CRITICAL, FAILED, RECOVERING})
SEVERITY = {UNKNOWN: 0, HEALTHY: 0, RECOVERING: 1, DEGRADED: 1, CRITICAL: 2, FAILED: 3}
OUTCOME_CODE = {Outcome.UP: "u", Outcome.DEGRADED: "g", Outcome.DOWN: "d"}
MAX_WINDOW = 64  # the persisted column's width


@dataclass(frozen=True)
class Thresholds:
    failure_threshold: int = 3
    success_threshold: int = 1
    flap_window: int = 10
    flap_threshold: int = 5
    recovery_grace_s: float = 30.0

    @property
    def window(self) -> int:
        return max(1, min(self.flap_window, MAX_WINDOW))


@dataclass(frozen=True)
class MachineState:
    status: str = UNKNOWN
    status_since: datetime | None = None
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    recent: str = ""  # outcome codes, oldest first, at most MAX_WINDOW
    grace_until: datetime | None = None


@dataclass(frozen=True)
class Decision:
    """A status change and why."""

    previous: str
    current: str
    reason: str


def _bad_count(window: str) -> int:
    return len(window) - window.count("u")  # str.count: no per-character Python loop


def flapping(recent: str, t: Thresholds) -> bool:
    return _bad_count(recent[-t.window :]) >= t.flap_threshold


def observe(
    state: MachineState,
    outcome: Outcome | str,
    now: datetime,
    t: Thresholds,
    detail: str = "",
    *,
    conclusive: bool = False,
) -> tuple[MachineState, Decision | None]:
    """Fold one check result into the state. Returns the new state and a decision when the
    status changed. (Called once per check result: no dataclasses.replace, no eager strings.)

    ``conclusive``: the watched thing reported the failure itself (``CheckResult.conclusive``: a
    batch job's ``fail`` ping or non-zero exit code; while an action is in flight the heartbeat check
    reads only the pings since it). It needs no streak (``failure_threshold`` is 1 for it) and it ends
    the grace at once: the grace absorbs a start-up's noise, not a rerun that said it failed."""
    if outcome.__class__ is not Outcome:
        outcome = Outcome(outcome)
    grace_until = state.grace_until
    up = outcome is Outcome.UP
    if conclusive and not up:
        t = conclusive_thresholds(t)
        grace_until = None  # a definitive failure is no start-up noise: the grace is over
    # The grace covers the action's start-up only: the first pass ends it.
    grace = grace_until is not None and now < grace_until and not up
    if up:
        successes, failures = state.consecutive_successes + 1, 0
    elif grace:
        successes, failures = 0, state.consecutive_failures  # a failure during grace does not count
    else:
        successes, failures = 0, state.consecutive_failures + 1
    if grace and not up:
        recent = state.recent
    else:
        recent = state.recent + OUTCOME_CODE[outcome]
        if len(recent) > MAX_WINDOW:
            recent = recent[-MAX_WINDOW:]
    new = MachineState(
        state.status, state.status_since, failures, successes, recent, grace_until if grace else None
    )

    target, reason = _target(state, new, grace, t, detail)
    if target == state.status:
        return new, None
    if state.status == RECOVERING and target == HEALTHY:
        recent = recent[-successes:]  # the heal is verified: the outage is not flapping
    return (
        MachineState(target, now, failures, successes, recent, new.grace_until),
        Decision(state.status, target, reason),
    )


def _target(old: MachineState, new: MachineState, grace: bool, t: Thresholds, detail: str) -> tuple[str, str]:
    status = old.status
    if status == RECOVERING:
        if new.consecutive_successes >= t.success_threshold:
            return HEALTHY, f"recovery verified by {new.consecutive_successes} successful check(s)"
        if not grace and new.consecutive_failures >= t.failure_threshold:
            why = f": {detail}" if detail else ""
            last = new.recent[-t.failure_threshold :]
            target = FAILED if last.count("d") == len(last) else DEGRADED
            still = "still failing" if target == FAILED else "answering but degraded"
            return target, f"{still} after the recovery action ({new.consecutive_failures} failures){why}"
        if not grace:
            # Flapping since the action (the window only holds results from after it): neither
            # threshold may ever be met in a row, so this is the verdict: the action did not make it
            # stable. Without it the component would stay `recovering`, never acted on again.
            window = new.recent[-t.window :]
            bad = _bad_count(window)
            if bad >= t.flap_threshold:
                target = FAILED if window.count("d") == bad else DEGRADED
                return (
                    target,
                    f"flapping after the recovery action: {bad} of the last {len(window)} checks failed",
                )
        return status, ""
    if new.consecutive_failures >= t.failure_threshold:
        last = new.recent[-t.failure_threshold :]
        target = CRITICAL if last and last.count("d") == len(last) else DEGRADED
        if SEVERITY[target] <= SEVERITY[status]:
            return status, ""  # already as bad or worse
        why = f": {detail}" if detail else ""
        return target, f"{new.consecutive_failures} consecutive failed checks{why}"
    window = new.recent[-t.window :]
    bad = _bad_count(window)
    is_flapping = bad >= t.flap_threshold
    if new.consecutive_successes >= t.success_threshold:
        if is_flapping:
            if status in (HEALTHY, UNKNOWN):
                return DEGRADED, f"flapping: {bad} of the last {len(window)} checks failed"
            return status, ""  # no improvement while flapping
        if status != HEALTHY:
            why = f": {detail}" if detail else ""
            return HEALTHY, f"{new.consecutive_successes} consecutive successful checks{why}"
        return status, ""
    if is_flapping and status in (HEALTHY, UNKNOWN):
        return DEGRADED, f"flapping: {bad} of the last {len(window)} checks failed"
    return status, ""


def conclusive_thresholds(t: Thresholds) -> Thresholds:
    """A failure the component reported itself (``CheckResult.conclusive``) needs no streak."""
    return t if t.failure_threshold == 1 else replace(t, failure_threshold=1)


def begin_recovery(
    state: MachineState, now: datetime, t: Thresholds, action: str, grace_s: float | None = None
) -> tuple[MachineState, Decision | None]:
    """A recovery action just ran: `recovering` until verified, failures ignored during the grace
    (the policy's ``grace_s``; the monitoring default when the caller has none).

    The action's own effects never open an incident: a component that is not in an incident (healed
    for an external alert, or restarted by hand while healthy) keeps its status, and only its
    start-up is covered by the grace. The outcomes before the action leave the flap window."""
    grace = t.recovery_grace_s if grace_s is None else max(0.0, grace_s)
    grace_until = lifecycle.grace_deadline(now, grace)
    new = replace(state, consecutive_failures=0, consecutive_successes=0, recent="", grace_until=grace_until)
    if state.status == RECOVERING or not lifecycle.opens_incident(HEALTHY, state.status):
        return new, None
    reason = f"recovery action {action!r} ran; verifying (grace {grace:g}s)"
    return replace(new, status=RECOVERING, status_since=now), Decision(state.status, RECOVERING, reason)
