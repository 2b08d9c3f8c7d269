"""A child held for a heartbeat upstream (a batch job whose output the child serves) waits as long as the
job's check needs to see it dead, and is not released by the job's check passing: a heartbeat check
passes until the ping is overdue, so only a ping since the child's incident opened says the job lives.
Check documents are built by the API's own validator, so the keys read are the ones stored.
(The whole story with real processes: tests/scenarios/stories.py, BatchChain.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.components.specs import validate_check
from app.db.models import Component, ComponentState
from app.healing.rootcause import detection_window, noticed_by
from app.healing.rootcause_loop import _known_healthy
from tests.conftest import make_settings

OPENED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def job(check: dict) -> Component:
    return Component(name="nightly-export", enabled=True, check=validate_check(check))


def test_a_heartbeat_upstream_needs_its_period_grace_and_threshold_to_notice_a_dead_job(tmp_path):
    settings = make_settings("sqlite+aiosqlite:///unused.db", tmp_path)
    hourly = job({"kind": "heartbeat", "period": "1h", "grace": "5m", "interval": 30, "failure_threshold": 2})
    assert detection_window(hourly, settings) == 3600 + 300 + 30 * 2
    spelled = job({"kind": "heartbeat", "period_s": 10, "grace_s": 2, "interval": 1, "failure_threshold": 2})
    assert detection_window(spelled, settings) == 10 + 2 + 1 * 2
    http = Component(
        name="api",
        enabled=True,
        check=validate_check(
            {
                "kind": "http",
                "url": "http://127.0.0.1:9/health",
                "interval": 5,
                "timeout": 2,
                "failure_threshold": 3,
            }
        ),
    )
    assert detection_window(http, settings) == 5 * 3 + 2


def test_a_passing_heartbeat_check_without_a_ping_since_does_not_release_the_child():
    upstream = job({"kind": "heartbeat", "period_s": 600, "grace_s": 60})
    checked = OPENED + timedelta(seconds=5)  # the check passed after the child's incident opened ...
    silent = ComponentState(
        status="healthy",
        consecutive_failures=0,
        last_check_at=checked,
        last_ping_at=OPENED - timedelta(seconds=30),  # ... but the job has not pinged since
    )
    assert not _known_healthy((upstream, silent), OPENED)
    never = ComponentState(status="healthy", consecutive_failures=0, last_check_at=checked, last_ping_at=None)
    assert not _known_healthy((upstream, never), OPENED)
    alive = ComponentState(
        status="healthy",
        consecutive_failures=0,
        last_check_at=checked,
        last_ping_at=OPENED + timedelta(seconds=2),
    )
    assert _known_healthy((upstream, alive), OPENED)


def test_a_passing_http_upstream_still_releases_the_child():
    upstream = Component(
        name="api", enabled=True, check=validate_check({"kind": "http", "url": "http://127.0.0.1:9/health"})
    )
    state = ComponentState(
        status="healthy", consecutive_failures=0, last_check_at=OPENED + timedelta(seconds=1)
    )
    assert _known_healthy((upstream, state), OPENED)


def test_the_hold_for_a_heartbeat_upstream_counts_from_its_last_ping(tmp_path):
    """A child held for an hourly job is held until the job's ping would be overdue (plus the checks'
    threshold): from the job's last ping, not a whole period from the child's incident."""
    settings = make_settings("sqlite+aiosqlite:///unused.db", tmp_path)
    hourly = job({"kind": "heartbeat", "period": "1h", "grace": "5m", "interval": 30, "failure_threshold": 2})

    def held(ago: timedelta) -> datetime:
        state = ComponentState(status="healthy", consecutive_failures=0, last_ping_at=OPENED - ago)
        return noticed_by(hourly, state, settings, OPENED)

    # pinged 55 minutes before: overdue 10 minutes after the incident opened, seen a minute later
    assert held(timedelta(minutes=55)) == OPENED + timedelta(minutes=11)
    # pinged a minute before: not known before its ping is overdue, 64 minutes later, plus a minute
    assert held(timedelta(minutes=1)) == OPENED + timedelta(minutes=65)
    # overdue already (the checks have not caught up): the checks' threshold from now
    assert held(timedelta(hours=3)) == OPENED + timedelta(minutes=1)
    # never pinged: the whole window from now
    never = ComponentState(status="unknown", consecutive_failures=0)
    assert noticed_by(hourly, never, settings, OPENED) == OPENED + timedelta(seconds=3600 + 300 + 60)
    http = Component(
        name="api",
        enabled=True,
        check=validate_check({"kind": "http", "url": "http://127.0.0.1:9/", "interval": 5, "timeout": 2}),
    )
    assert noticed_by(http, None, settings, OPENED) == OPENED + timedelta(
        seconds=detection_window(http, settings)
    )
