"""Times without a zone, given to the SDK or the CLI, are read as UTC: the API itself wants an offset
(a 422 otherwise), so the client adds it instead of passing the caller's string on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from app.client import GuardAPIError, GuardClient
from app.client import calls as client_calls

WHEN = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
NAIVE_BEFORE = (WHEN - timedelta(minutes=1)).replace(tzinfo=None)  # a minute before, no zone
NAIVE_AFTER = (WHEN + timedelta(minutes=1)).replace(tzinfo=None)


def cli(live, token: str, *args: str) -> dict:
    env = {**os.environ, "PIPELINE_CLI_CONFIG_DIR": os.devnull}
    proc = subprocess.run(
        [sys.executable, "-m", "app", *args, "--url", live.url, "--token", token, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def test_sdk_and_cli_read_times_without_a_zone_as_utc(live):
    token = live.token()
    with GuardClient(live.url, token=token, raise_errors=True) as guard:
        guard.record_metric("etl", "rows", 42.0, timestamp=WHEN)
        guard.flush()
        points = guard.get_metrics("etl", "rows", start_time=NAIVE_BEFORE.isoformat(), end_time=NAIVE_AFTER)
        assert [p["value"] for p in points["items"]] == [42.0]
        # the same instants an hour later (as if read in UTC+1) exclude it: the string is UTC, not local
        later = (NAIVE_BEFORE + timedelta(hours=1)).isoformat()
        assert guard.get_metrics("etl", "rows", start_time=later)["items"] == []
        summary = guard.get_metric_summary("etl", "rows", start=NAIVE_BEFORE.isoformat(), end=NAIVE_AFTER)
        assert summary["count"] == 1
        assert guard.list_audit(since=NAIVE_BEFORE.isoformat())["items"]

    query = cli(
        live,
        token,
        "metrics",
        "query",
        "--component",
        "etl",
        "--metric",
        "rows",
        "--start",
        NAIVE_BEFORE.isoformat(),
        "--end",
        NAIVE_AFTER.isoformat(),
    )
    assert [p["value"] for p in query["items"]] == [42.0]
    summary = cli(
        live, token, "metrics", "summary", "etl", "rows", "--start", NAIVE_BEFORE.date().isoformat()
    )
    assert summary["count"] == 1


def test_an_acknowledgement_until_a_time_without_a_zone_is_sent_in_utc():
    for until in (datetime(2100, 1, 2, 3, 4), "2100-01-02T03:04:00"):
        assert client_calls.ack_alert(7, until=until).json == {"until": "2100-01-02T03:04:00+00:00"}


def test_an_acknowledgement_until_a_time_without_a_zone_reaches_the_alert_lookup(live):
    """Against a running guard: the body is valid (the alert lookup answers 404), not a 422."""
    token = live.token()
    with GuardClient(live.url, token=token, raise_errors=True) as guard:
        for until in (datetime(2100, 1, 2, 3, 4), "2100-01-02T03:04:00"):
            try:
                guard.ack_alert(999999, until=until)
            except GuardAPIError as exc:
                assert exc.status == 404, exc
            else:
                raise AssertionError("alert 999999 does not exist")
    env = {**os.environ, "PIPELINE_CLI_CONFIG_DIR": os.devnull}
    proc = subprocess.run(
        [sys.executable, "-m", "app", "alerts", "ack", "999999", "--until", "2100-01-02T03:04"]
        + ["--url", live.url, "--token", token],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert proc.returncode != 0 and "alert 999999 not found" in proc.stderr, proc.stdout + proc.stderr
