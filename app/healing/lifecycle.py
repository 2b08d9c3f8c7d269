"""The life of one incident, as one small pure state machine: no I/O, no clock of its own (every
call takes ``now``), so tests drive it with a fake clock. docs/LIFECYCLE.md says it in words.

    detected -> acting -> verifying -> healed | failed -> (retry: acting | escalated)
    closed   when the component is healthy again (from any phase, with or without an action)

The rules the rest of the guard follows through this module's functions:

- ``opens_incident``: only a component getting *worse by itself* opens an incident. ``recovering``
  is what a recovery action does to a component, so it never opens one (the health state machine
  does not even enter it without an open incident; the recorder checks again). While the action
  runs, the component's failing results are held (the recorder skips them): its downtime is the
  action's own effect.
- ``should_heal``: the policy's ``heal_on`` statuses (default critical and failed; degraded is
  opt-in) are the only ones an action is taken for.
- Grace: ``grace_s`` is the policy's ``grace_period``; it starts when the action finished and ends at
  the first passing check (the action's start-up is over), at a failure the component reported
  itself (a rerun's ``fail`` ping: it counts at once) or at its deadline, whichever is first — never
  later than the ``recovering -> healthy`` transition.
- ``verdict_after_action``: leaving ``recovering`` decides the action: ``healthy`` after
  ``success_threshold`` passes is a (provisional) heal; any unhealthy status is a failed action, at
  once, so no attempt waits in ``verifying`` for a result that cannot verify it.
- ``relapsed``: an incident opened within the stick window (``stick_s``, the policy's
  ``verify_timeout``) after a heal turns that heal into a failed one, for budgets and breakers.
- Failures seen during the action and before the heal are forgotten by the flap window when the
  heal is verified (``app/monitoring/state_machine.py`` resets it), so they cannot make a healthy
  component look flapping afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

DETECTED, ACTING, VERIFYING, HEALED, FAILED, ESCALATED, CLOSED = (
    "detected",
    "acting",
    "verifying",
    "healed",
    "failed",
    "escalated",
    "closed",
)
ENDINGS = frozenset({HEALED, ESCALATED, CLOSED})

HEALABLE = ("degraded", "critical", "failed")
DEFAULT_HEAL_ON = ("critical", "failed")
# Statuses a component reaches by itself, each of which opens an incident when none is open.
INCIDENT_STATUSES = frozenset(HEALABLE)
RECOVERING = "recovering"
HEALTHY = "healthy"


def normalise_heal_on(value: object) -> list[str]:
    """The policy's ``heal_on`` list, validated (raises ValueError with a message for the user)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(f"must be a non-empty list of {', '.join(HEALABLE)}")
    out: list[str] = []
    for item in value:
        if item not in HEALABLE:
            raise ValueError(f"unknown status {item!r}; allowed: {', '.join(HEALABLE)}")
        if item not in out:
            out.append(item)
    return [s for s in HEALABLE if s in out]  # one spelling per set: stable round trips


def should_heal(status: str | None, heal_on: Iterable[str]) -> bool:
    return status in set(heal_on)


def opens_incident(_previous: str, current: str) -> bool:
    """Does this health transition open an incident when none is open? Never for ``recovering``:
    that status is the effect of an action, not a new episode."""
    return current in INCIDENT_STATUSES


def verdict_after_action(previous: str, current: str) -> str | None:
    """What a health transition says about the action being verified: ``healed``, ``failed`` or
    nothing (the transition is not the end of a verification)."""
    if previous != RECOVERING:
        return None
    if current == HEALTHY:
        return HEALED
    if current in INCIDENT_STATUSES:
        return FAILED
    return None


def external_status(severity: str) -> str:
    """The status an external alert's incident opens with (Alertmanager): a critical alert is a
    critical incident, anything else a degraded one, healed only where ``heal_on`` has degraded."""
    return "critical" if severity == "critical" else "degraded"


def grace_deadline(action_finished_at: datetime, grace_s: float) -> datetime | None:
    return action_finished_at + timedelta(seconds=grace_s) if grace_s > 0 else None


def relapsed(healed_at: datetime | None, now: datetime, stick_s: float) -> bool:
    """A new incident this soon after a heal means the heal did not hold."""
    return healed_at is not None and stick_s > 0 and healed_at <= now < healed_at + timedelta(seconds=stick_s)


@dataclass(frozen=True)
class Rules:
    heal_on: tuple[str, ...] = DEFAULT_HEAL_ON
    max_attempts: int = 3
    stick_s: float = 60.0
    verify_timeout_s: float = 60.0


@dataclass
class Episode:
    """One incident, from detection to its end (pure; the engine keeps the same facts in rows)."""

    opened_at: datetime
    status: str
    phase: str = DETECTED
    attempts: int = 0
    acting_since: datetime | None = None
    verifying_since: datetime | None = None
    healed_at: datetime | None = None
    relapsed: bool = False
    history: list[tuple[datetime, str]] = field(default_factory=list)

    def _go(self, phase: str, now: datetime) -> None:
        self.phase = phase
        self.history.append((now, phase))

    @property
    def ended(self) -> bool:
        return self.phase in ENDINGS


class Lifecycle:
    """One component's incidents over time. Feed it health transitions (``transition``), ask it
    whether to act (``may_act``), tell it when an action starts and ends, and tick the clock."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.current: Episode | None = None
        self.closed: list[Episode] = []
        self.failed_heals = 0
        self.last_heal_at: datetime | None = None

    def transition(self, previous: str, current: str, now: datetime) -> None:
        episode = self.current
        if episode is None:
            if opens_incident(previous, current):
                if relapsed(self.last_heal_at, now, self.rules.stick_s):
                    self.failed_heals += 1  # the last heal did not hold: it counts as failed
                    self.closed[-1].relapsed = True
                    self.last_heal_at = None
                self.current = Episode(opened_at=now, status=current, history=[(now, DETECTED)])
            return
        verdict = verdict_after_action(previous, current)
        episode.status = current
        if verdict == HEALED and episode.phase == VERIFYING:
            episode.healed_at = now
            episode._go(HEALED, now)
            self.last_heal_at = now
        elif verdict == FAILED and episode.phase == VERIFYING:
            self._failed(episode, now)
        if current == HEALTHY:
            if episode.phase not in (HEALED, ESCALATED):
                episode._go(CLOSED, now)
            self.closed.append(episode)
            self.current = None

    def may_act(self, _now: datetime) -> bool:
        episode = self.current
        if episode is None or episode.phase not in (DETECTED, FAILED):
            return False
        return should_heal(episode.status, self.rules.heal_on) and episode.attempts < self.rules.max_attempts

    def action_started(self, now: datetime) -> None:
        episode = self.current
        assert episode is not None and episode.phase in (DETECTED, FAILED), (
            "no action without an open incident"
        )
        episode.attempts += 1
        episode.acting_since = now
        episode._go(ACTING, now)

    def action_finished(self, ok: bool, now: datetime) -> None:
        episode = self.current
        if episode is None or episode.phase != ACTING:
            return
        if ok:
            episode.verifying_since = now
            episode._go(VERIFYING, now)
        else:
            self._failed(episode, now)

    def tick(self, now: datetime) -> None:
        episode = self.current
        if episode is None:
            return
        if (
            episode.phase == VERIFYING
            and episode.verifying_since is not None
            and now >= episode.verifying_since + timedelta(seconds=self.rules.verify_timeout_s)
        ):
            self._failed(episode, now)

    def _failed(self, episode: Episode, now: datetime) -> None:
        episode._go(FAILED, now)
        if episode.attempts >= self.rules.max_attempts:
            episode._go(ESCALATED, now)
