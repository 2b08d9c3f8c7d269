"""When a held incident is released: the pure decision, on a clock the caller gives.

A dependent's incident opened while its upstreams looked healthy is held (``app.healing.rootcause``)
until ``held_until``: when its upstreams would have noticed their own failure, counted from the
nominal check intervals. On a guard that runs late (an overloaded machine, a process starved of CPU
for a while) that wall-clock window can pass before an upstream's checks have run at all since the
dependent failed: its stored status still reads healthy, yet nothing has looked. Releasing then heals
(and notifies) the dependent for what is its upstream's failure.

So the window is a lower bound, and the upstreams' own checks decide: the hold lasts past
``held_until`` while an upstream is **undecided** — not checked since the dependent failed (its state
is unknown, not healthy) or failing below its threshold (its verdict is on its way). Each check of it
either passes (known healthy: released) or fails (at its threshold: unhealthy, and the incident is
attributed to it). Only a guard whose checks of an upstream have stopped would hold for ever: past
``LATE_FACTOR`` times the longest undecided upstream's window the incident is released anyway.

The same goes for the dependent's own window once its root has recovered: it is its own only if its
own checks still fail after the root came back; while none has run since, it waits for them (up to
``LATE_FACTOR`` of its windows).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

UNHEALTHY = frozenset({"degraded", "critical", "failed", "recovering"})
SLACK_S = 5.0
# How many detection windows late an upstream's checks may run before the hold gives up on them.
LATE_FACTOR = 4.0


@dataclass(frozen=True)
class Upstream:
    """What the hold reads of one upstream (its rows, as the root-cause loop sees them)."""

    monitored: bool  # enabled, with a check: it will be checked (else nothing to wait for)
    heartbeat: bool
    status: str | None
    consecutive_failures: int
    last_check_at: datetime | None
    last_ping_at: datetime | None
    window_s: float  # how long it needs to notice its own failure (``rootcause.detection_window``)


def known_healthy(up: Upstream, since: datetime) -> bool:
    """Passed a check since ``since`` and healthy (a heartbeat: has also pinged since, its check passes
    until a ping is overdue), or nothing to wait for (not monitored)."""
    if not up.monitored:
        return True
    if up.heartbeat and (up.last_ping_at is None or up.last_ping_at < since):
        return False
    return (
        up.status == "healthy"
        and up.consecutive_failures == 0
        and up.last_check_at is not None
        and up.last_check_at >= since
    )


def undecided(up: Upstream, since: datetime) -> bool:
    """Its checks have not given their verdict on a failure at ``since`` yet: not checked since (state
    unknown), or failing below its threshold. Unhealthy is a verdict (the incident is attributed)."""
    if not up.monitored or up.status in UNHEALTHY:
        return False
    if up.last_check_at is None or up.last_check_at < since:
        return True
    return up.consecutive_failures > 0


def gives_up_at(since: datetime, ups: Iterable[Upstream]) -> datetime | None:
    """When the hold stops waiting for late checks of the undecided upstreams (None: none undecided)."""
    windows = [up.window_s for up in ups if undecided(up, since)]
    if not windows:
        return None
    return since + timedelta(seconds=LATE_FACTOR * max(windows) + SLACK_S)


def releases(now: datetime, since: datetime, held_until: datetime | None, ups: list[Upstream]) -> bool:
    """Whether a held incident (opened at ``since``, no upstream unhealthy now) is the dependent's own
    now: every upstream is known healthy; or ``held_until`` has passed and no upstream is undecided,
    or the undecided ones' checks are more than ``LATE_FACTOR`` windows late."""
    if all(known_healthy(up, since) for up in ups):
        return True
    if held_until is not None and now < held_until:
        return False
    give_up = gives_up_at(since, ups)
    return give_up is None or now >= give_up


def own_window_over(
    now: datetime,
    held_until: datetime | None,
    recovered_at: datetime | None,
    last_check_at: datetime | None,
    window_s: float,
) -> bool:
    """Whether an attributed dependent's own window (given when its root recovered, at
    ``recovered_at``) is over: ``held_until`` has passed and one of its own checks has run since the
    root recovered (or its checks are more than ``LATE_FACTOR`` windows late). ``recovered_at`` None:
    the root's recovery is not known (the window alone decides)."""
    if held_until is not None and now < held_until:
        return False
    if recovered_at is None or (last_check_at is not None and last_check_at >= recovered_at):
        return True
    return now >= recovered_at + timedelta(seconds=LATE_FACTOR * window_s + SLACK_S)
