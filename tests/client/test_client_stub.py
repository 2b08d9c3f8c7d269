"""Client failure behaviour and request shapes against a real stub HTTP server on loopback."""

from __future__ import annotations

import logging
import time

import pytest
from live_guard import envelope, free_port

from app.client import AsyncGuardClient, GuardAPIError, GuardClient, GuardConnectionError
from app.client import sync as sync_module

BATCH = "/api/v1/metrics/batch"


@pytest.fixture
def sleeps(monkeypatch):
    """Record back-off delays instead of sleeping them."""
    recorded: list[float] = []
    monkeypatch.setattr(sync_module.time, "sleep", lambda seconds: recorded.append(seconds))
    return recorded


def test_retries_a_500_then_succeeds(stub, sleeps):
    stub.script("GET", "/api/v1/status", (500, envelope("internal_error", "boom")), (200, {"overall_health": "healthy"}))
    with GuardClient(stub.url, "t0k", flush_interval=0) as guard:
        assert guard.get_system_status() == {"overall_health": "healthy"}
    assert len(stub.calls("GET", "/api/v1/status")) == 2
    assert len(sleeps) == 1
    assert stub.calls()[0].headers["authorization"] == "Bearer t0k"


def test_429_honours_retry_after(stub, sleeps):
    stub.script("GET", "/api/v1/status", (429, envelope("rate_limited", "slow down"), {"Retry-After": "7"}),
                (200, {"overall_health": "healthy"}))
    with GuardClient(stub.url, "t", flush_interval=0) as guard:
        assert guard.get_system_status()["overall_health"] == "healthy"
    assert sleeps == [7.0]


def test_exponential_backoff_then_gives_up_and_logs(stub, sleeps, caplog):
    stub.script("GET", "/api/v1/status", *[(503, envelope("service_unavailable", "db down"))] * 4)
    with (GuardClient(stub.url, "t", retries=3, backoff=1.0, flush_interval=0) as guard,
          caplog.at_level(logging.WARNING, logger="pipeline_guard.client")):
        assert guard.get_system_status() is None
    assert len(stub.calls("GET", "/api/v1/status")) == 4
    assert len(sleeps) == 3 and 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0 and 2.0 <= sleeps[2] <= 4.0
    assert "db down" in caplog.text


def test_connection_refused_is_logged_not_raised(sleeps, caplog):
    url = f"http://127.0.0.1:{free_port()}"
    with caplog.at_level(logging.WARNING, logger="pipeline_guard.client"):
        guard = GuardClient(url, "t", retries=2, flush_interval=0)
        assert guard.get_system_status() is None
        assert guard.heartbeat("etl", "start") is None
        guard.record_metric("etl", "rows", 1)
        guard.close()  # flushes: also must not raise
    assert len(sleeps) == 6  # three calls (status, heartbeat, the final flush), two retries each
    assert "Connection refused" in caplog.text or "ConnectError" in caplog.text


def test_raise_errors_raises_the_envelope(stub, sleeps):
    stub.script("GET", "/api/v1/components/nope", (404, envelope("not_found", "component 'nope' not found", {"name": "nope"})))
    with (GuardClient(stub.url, "t", raise_errors=True, flush_interval=0) as guard,
          pytest.raises(GuardAPIError) as caught):
        guard.get_component("nope")
    assert caught.value.status == 404
    assert caught.value.type == "not_found"
    assert caught.value.message == "component 'nope' not found"
    assert caught.value.details == {"name": "nope"}
    assert sleeps == []  # a 404 is not retried


def test_raise_errors_connection_error(sleeps):
    guard = GuardClient(f"http://127.0.0.1:{free_port()}", "t", retries=1, raise_errors=True, flush_interval=0)
    with pytest.raises(GuardConnectionError):
        guard.get_system_status()
    guard._closed.set()  # nothing buffered; skip the final flush
    guard._http.close()


def test_batches_flush_on_size_and_on_close(stub):
    with GuardClient(stub.url, "t", batch_size=3, flush_interval=0) as guard:
        for i in range(7):
            guard.record_metric("etl", "rows", i, labels={"stage": "load"}, timestamp=1_700_000_000 + i)
        assert [len(c.body["points"]) for c in stub.calls("POST", BATCH)] == [3, 3]
        assert guard.pending == 1
    batches = stub.calls("POST", BATCH)
    assert [len(c.body["points"]) for c in batches] == [3, 3, 1]
    first = batches[0].body["points"][0]
    assert first["component"] == "etl" and first["metric_name"] == "rows" and first["value"] == 0.0
    assert first["labels"] == {"stage": "load"}
    assert first["timestamp"].startswith("2023-11-14T22:13:20")


def test_batches_flush_on_interval(stub):
    with GuardClient(stub.url, "t", batch_size=100, flush_interval=0.1) as guard:
        guard.record_metric("etl", "rows", 1)
        deadline = time.monotonic() + 10
        while not stub.calls("POST", BATCH) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(stub.calls("POST", BATCH)) == 1
        assert guard.pending == 0


def test_rejected_points_are_dropped_unreachable_points_are_kept(stub, sleeps):
    stub.script("POST", BATCH, (422, envelope("validation_error", "bad point")))
    with GuardClient(stub.url, "t", batch_size=10, flush_interval=0) as guard:
        guard.record_metric("etl", "rows", 1)
        assert guard.flush() == 0 and guard.pending == 0  # rejected: not retried forever
        stub.script("POST", BATCH, *[(503, envelope("service_unavailable", "later"))] * 4)
        guard.record_metric("etl", "rows", 2)
        assert guard.flush() == 0 and guard.pending == 1  # kept for the next flush
        assert guard.flush() == 1 and guard.pending == 0


def test_record_batch_sends_now_in_chunks(stub):
    with GuardClient(stub.url, "t", batch_size=2, flush_interval=0) as guard:
        sent = guard.record_batch([("etl", "rows", 1), {"component": "etl", "metric_name": "lag", "value": 2.5},
                                   ("etl", "rows", 3, {"k": "v"})])
    assert sent == 3
    assert [len(c.body["points"]) for c in stub.calls("POST", BATCH)] == [2, 1]


def test_job_reports_start_and_success(stub):
    with GuardClient(stub.url, "t", flush_interval=0) as guard, guard.job("nightly", ping_token="ping-123") as run:
        guard.record_metric("nightly", "rows", 10)
        run.message = "10 rows"
    beats = stub.calls("POST", "/api/v1/components/nightly/heartbeat")
    assert [b.body["status"] for b in beats] == ["start", "success"]
    assert beats[1].body["duration_seconds"] >= 0 and beats[1].body["message"] == "10 rows"
    assert all(b.headers["x-ping-token"] == "ping-123" for b in beats)
    assert "authorization" not in beats[0].headers  # a ping token is enough
    # the metrics were flushed before the success was reported
    order = [r.path for r in stub.requests]
    assert order.index(BATCH) < len(order) - 1


def test_job_reports_failure_and_the_exception_propagates(stub):
    guard = GuardClient(stub.url, "t", flush_interval=0, raise_errors=True)

    @guard.job("nightly")
    def work(n):
        raise ValueError(f"bad input {n}")

    with pytest.raises(ValueError, match="bad input 3"):
        work(3)
    beats = stub.calls("POST", "/api/v1/components/nightly/heartbeat")
    assert [b.body["status"] for b in beats] == ["start", "fail"]
    assert beats[1].body["message"] == "ValueError: bad input 3"
    assert beats[1].headers["authorization"] == "Bearer t"
    guard.close()


def test_job_failure_reporting_errors_never_hide_the_job_error(sleeps):
    guard = GuardClient(f"http://127.0.0.1:{free_port()}", "t", retries=0, flush_interval=0, raise_errors=False)
    with pytest.raises(KeyError), guard.job("nightly"):
        raise KeyError("x")
    guard.close()


def test_login_with_username_and_password(stub):
    with GuardClient(stub.url, username="bot", password="pw-123456789012", flush_interval=0) as guard:
        guard.list_components(labels={"team": "data"}, region="eu")
    login, listing = stub.requests[0], stub.requests[1]
    assert login.path == "/api/v1/auth/token" and login.body == {"username": "bot", "password": "pw-123456789012"}
    assert listing.headers["authorization"] == "Bearer stub-token"
    assert ("label", "team=data") in listing.query and ("region", "eu") in listing.query


def test_request_shapes_of_endpoints_being_built(stub):
    with GuardClient(stub.url, "t", flush_interval=0) as guard:
        guard.get_metrics("etl", "rows", start_time="2024-01-01T00:00:00Z", labels={"stage": "load"}, limit=5)
        guard.get_metric_summary("etl", "rows", since="1h")
        guard.heal("etl", strategy="restart")
        guard.ack_alert(42)
        guard.resolve_alert(42, comment="fixed")
        guard.create_silence({"matchers": {"component": "etl"}, "ends_at": "2030-01-01T00:00:00Z"})
        guard.disable_component("etl")
    shapes = [(r.method, r.path) for r in stub.requests]
    assert shapes == [
        ("GET", "/api/v1/metrics"), ("GET", "/api/v1/metrics/summary"), ("POST", "/api/v1/healing/etl"),
        ("POST", "/api/v1/alerts/42/ack"), ("POST", "/api/v1/alerts/42/resolve"), ("POST", "/api/v1/silences"),
        ("PATCH", "/api/v1/components/etl"),
    ]
    query = dict(stub.requests[0].query)
    assert query == {"component": "etl", "metric_name": "rows", "start_time": "2024-01-01T00:00:00Z",
                     "limit": "5", "labels": "stage=load"}
    assert dict(stub.requests[1].query) == {"component": "etl", "metric_name": "rows", "since": "1h"}
    assert stub.requests[2].body == {"strategy": "restart"}
    assert stub.requests[6].body == {"enabled": False}


# --- the async client -------------------------------------------------------------------------

async def test_async_client_retries_batches_and_jobs(stub, monkeypatch):
    import app.client.aio as aio_module

    delays: list[float] = []

    async def fake_sleep(seconds):
        delays.append(seconds)

    stub.script("GET", "/api/v1/status", (502, None), (429, None, {"Retry-After": "3"}), (200, {"overall_health": "ok"}))
    async with AsyncGuardClient(stub.url, "t", batch_size=2, flush_interval=0) as guard:
        monkeypatch.setattr(aio_module.asyncio, "sleep", fake_sleep)
        assert await guard.get_system_status() == {"overall_health": "ok"}
        monkeypatch.undo()
        assert len(delays) == 2 and delays[1] == 3.0
        async with guard.job("nightly"):
            for i in range(3):
                await guard.record_metric("nightly", "rows", i)

        @guard.job("nightly")
        async def failing():
            raise RuntimeError("nope")

        with pytest.raises(RuntimeError):
            await failing()
    assert [len(c.body["points"]) for c in stub.calls("POST", BATCH)] == [2, 1]
    beats = [b.body["status"] for b in stub.calls("POST", "/api/v1/components/nightly/heartbeat")]
    assert beats == ["start", "success", "start", "fail"]


async def test_async_client_raise_errors(stub):
    stub.script("POST", "/api/v1/healing/etl", (409, envelope("conflict", "healing already running")))
    async with AsyncGuardClient(stub.url, "t", raise_errors=True, flush_interval=0) as guard:
        with pytest.raises(GuardAPIError, match="healing already running"):
            await guard.heal("etl")


async def test_async_connection_refused_is_logged(caplog):
    async with AsyncGuardClient(f"http://127.0.0.1:{free_port()}", "t", retries=1, backoff=0.01,
                                flush_interval=0) as guard:
        with caplog.at_level(logging.WARNING, logger="pipeline_guard.client"):
            assert await guard.get_system_status() is None
    assert "get_system_status failed" in caplog.text
