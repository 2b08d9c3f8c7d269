"""Property tests of the hold of a dependent's incident (app/healing/rootcause_hold.py) on a fake clock
where the upstream's checks run late: each check comes ``interval`` after the previous one plus a lag
of its own (an overloaded guard falls behind and stays behind). The root-cause loop looks every
quarter of a second. Whatever the lags:

- an upstream that failed is never passed over: the dependent is not released before the upstream's
  checks reach their threshold, as long as they do so before the hold gives up on late checks;
- a dependent that failed on its own (its upstream fine) is released by the upstream's first passing
  check after it failed, or by ``held_until``, whichever is later: late checks delay it, nothing more;
- the hold ends: with the upstream's checks stopped altogether, the dependent is released when the
  hold gives up (``LATE_FACTOR`` windows), never held for ever;
- nothing is released before ``held_until`` unless every upstream is known healthy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from app.healing import rootcause_hold as hold

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TICK_S = 0.25


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@dataclass
class Check:
    at: float
    passed: bool


class UpstreamChecks:
    """The upstream's check results: nominal ``interval``, each one ``lag`` late on top of the last."""

    def __init__(
        self, interval: float, timeout: float, threshold: int, lags: list[float], failed_at: float | None
    ):
        self.interval, self.timeout, self.threshold = interval, timeout, threshold
        self.checks: list[Check] = []
        t = 0.0
        for lag in lags:
            t += interval + lag
            self.checks.append(Check(t, failed_at is None or t < failed_at))

    @property
    def window_s(self) -> float:
        return self.interval * self.threshold + self.timeout

    def seen(self, now: float) -> list[Check]:
        return [c for c in self.checks if c.at <= now]

    def unhealthy_at(self) -> float | None:
        run = 0
        for check in self.checks:
            run = 0 if check.passed else run + 1
            if run >= self.threshold:
                return check.at
        return None

    def view(self, now: float) -> hold.Upstream:
        """The upstream's row at ``now``: unhealthy for good once its threshold was reached (these
        timelines have no recovery), else healthy with its trailing failures counted."""
        seen = self.seen(now)
        failures = 0
        for check in reversed(seen):
            if check.passed:
                break
            failures += 1
        reached = (unhealthy := self.unhealthy_at()) is not None and unhealthy <= now
        return hold.Upstream(
            monitored=True,
            heartbeat=False,
            status="critical" if reached else "healthy",
            consecutive_failures=failures,
            last_check_at=at(seen[-1].at) if seen else None,
            last_ping_at=None,
            window_s=self.window_s,
        )


def nominal_held_until(since: float, up: UpstreamChecks) -> float:
    """What ``rootcause._verdict`` stores: since + the upstream's window + slack."""
    return since + up.window_s + hold.SLACK_S


def first_release(up: UpstreamChecks, since: float, held_until: float, horizon: float) -> float | None:
    """The first tick the loop releases the held incident (None: attributed first, or still held)."""
    now = since
    while now <= horizon:
        view = up.view(now)
        if view.status in hold.UNHEALTHY:
            return None  # the loop attributes it to the upstream
        if hold.releases(at(now), at(since), at(held_until), [view]):
            return now
        now += TICK_S
    return None


intervals = st.sampled_from([0.5, 1.0, 2.0, 4.0])
thresholds = st.integers(1, 4)
timeouts = st.sampled_from([0.5, 1.0, 2.0])


@settings(max_examples=300, deadline=None)
@given(
    interval=intervals,
    threshold=thresholds,
    timeout=timeouts,
    lags=st.lists(st.floats(0, 6, allow_nan=False), min_size=40, max_size=40),
    failed_at=st.floats(0, 10, allow_nan=False),
    child_after=st.floats(0, 3, allow_nan=False),
)
def test_a_failed_upstream_is_never_passed_over_for_late_checks(
    interval, threshold, timeout, lags, failed_at, child_after
):
    up = UpstreamChecks(interval, timeout, threshold, lags, failed_at)
    since = failed_at + child_after  # the dependent noticed first, the upstream's checks lag behind
    if up.view(since).status in hold.UNHEALTHY:
        return  # attributed at once, never held
    unhealthy = up.unhealthy_at()
    assert unhealthy is not None  # forty checks: the threshold is reached
    give_up = hold.gives_up_at(at(since), [up.view(since)])
    assert give_up is not None
    held_until = nominal_held_until(since, up)
    released = first_release(up, since, held_until, horizon=unhealthy)
    if at(unhealthy) < give_up:
        assert released is None, (released, unhealthy)
    elif released is not None:
        assert at(released) >= give_up - timedelta(seconds=TICK_S)
    if at(unhealthy) >= give_up + timedelta(seconds=TICK_S):
        assert released is not None  # checks later than the hold waits for: released when it gives up


@settings(max_examples=300, deadline=None)
@given(
    interval=intervals,
    threshold=thresholds,
    timeout=timeouts,
    lags=st.lists(st.floats(0, 6, allow_nan=False), min_size=40, max_size=40),
    since=st.floats(0, 10, allow_nan=False),
)
def test_a_dependent_failing_on_its_own_is_released_once_the_upstream_has_passed(
    interval, threshold, timeout, lags, since
):
    up = UpstreamChecks(interval, timeout, threshold, lags, failed_at=None)
    held_until = nominal_held_until(since, up)
    passed = next(c.at for c in up.checks if c.at >= since)
    released = first_release(up, since, held_until, horizon=max(passed, held_until) + 2 * TICK_S)
    assert released is not None
    assert released <= max(passed, held_until) + TICK_S
    assert released >= held_until or released >= passed  # not before held_until, unless known healthy


@settings(max_examples=200, deadline=None)
@given(
    interval=intervals,
    threshold=thresholds,
    timeout=timeouts,
    checks=st.integers(0, 5),
    since=st.floats(0, 30, allow_nan=False),
    failing=st.booleans(),
)
def test_a_hold_ends_when_the_upstream_checks_stop(interval, threshold, timeout, checks, since, failing):
    """The upstream's checks stop (its scheduler is gone): released when the hold gives up."""
    lags = [0.0] * checks
    up = UpstreamChecks(interval, timeout, threshold, lags, failed_at=0.0 if failing else None)
    up.checks = [c for c in up.checks if c.at < since]  # none after the dependent failed
    if up.view(since).status in hold.UNHEALTHY:
        return
    held_until = nominal_held_until(since, up)
    give_up = hold.gives_up_at(at(since), [up.view(since)])
    assert give_up is not None
    horizon = (give_up - T0).total_seconds() + TICK_S
    released = first_release(up, since, held_until, horizon=horizon)
    assert released is not None
    assert at(released) >= give_up - timedelta(seconds=TICK_S)


@settings(max_examples=300, deadline=None)
@given(
    last_check=st.one_of(st.none(), st.floats(-10, 10, allow_nan=False)),
    failures=st.integers(0, 3),
    status=st.sampled_from(["healthy", "degraded", "critical", "recovering", "failed", None]),
    now=st.floats(0, 60, allow_nan=False),
    held_for=st.floats(0, 20, allow_nan=False),
)
def test_nothing_is_released_early_unless_known_healthy(last_check, failures, status, now, held_for):
    up = hold.Upstream(
        monitored=True,
        heartbeat=False,
        status=status,
        consecutive_failures=failures,
        last_check_at=None if last_check is None else at(last_check),
        last_ping_at=None,
        window_s=3.0,
    )
    since, held_until = at(0), at(held_for)
    if hold.releases(at(now), since, held_until, [up]) and at(now) < held_until:
        assert hold.known_healthy(up, since)


@settings(max_examples=300, deadline=None)
@given(
    window=st.sampled_from([1.5, 3.0, 9.0]),
    lags=st.lists(st.floats(0, 8, allow_nan=False), min_size=1, max_size=10),
    checked_before=st.floats(0.01, 5, allow_nan=False),  # its last check before the recovery
    stopped=st.booleans(),
)
def test_an_attributed_childs_own_window_waits_for_its_own_late_checks(window, lags, checked_before, stopped):
    """The root recovers at 0 and the child's window ends at ``window + SLACK_S``; the child's checks
    come late (each ``lag`` after the last), or have stopped. The window is over at the first tick
    past its end at which a check of the child ran since the recovery, or when the hold gives up."""
    recovered, held_until = 0.0, window + hold.SLACK_S
    checks, t = [], -checked_before
    for lag in lags:
        t += 1.0 + lag
        checks.append(t)
    if stopped:
        checks = []
    give_up = hold.LATE_FACTOR * window + hold.SLACK_S
    first_since = next((c for c in checks if c >= recovered), None)
    now = 0.0
    while now <= give_up + TICK_S:
        seen = [c for c in checks if c <= now]
        last = at(seen[-1]) if seen else at(-checked_before)
        over = hold.own_window_over(at(now), at(held_until), at(recovered), last, window)
        expected = now >= held_until and ((first_since is not None and first_since <= now) or now >= give_up)
        assert over == expected, (now, seen)
        now += TICK_S
