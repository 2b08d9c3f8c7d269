"""Client failure behaviour against a fault-injecting proxy in front of a real guard on loopback:
scripted faults (5xx, 429, refused points) come from the proxy, every other answer from the guard."""

from __future__ import annotations

import logging
import time

import pytest
from live_guard import envelope

from app.client import AsyncGuardClient, GuardAPIError, GuardClient, GuardConnectionError
from app.client import sync as sync_module
from tests.ports import free_port

BATCH = "/api/v1/metrics/batch"


def points_in(body: dict) -> int:
    """How many points a batch body carries, in either shape."""
    if "series" in body:
        return sum(len(entry["values"]) for entry in body["series"])
    return len(body["points"])


@pytest.fixture
def sleeps(monkeypatch):
    """Record back-off delays instead of sleeping them."""
    import threading

    recorded: list[float] = []
    real_sleep, test_thread = sync_module.time.sleep, threading.get_ident()

    def fake_sleep(seconds):
        # `time.sleep` is patched process-wide: only the client's own sleeps (this test's thread) are
        # recorded and skipped; the guard's and the proxy's threads keep sleeping for real.
        if threading.get_ident() != test_thread:
            return real_sleep(seconds)
        recorded.append(seconds)
        return None

    monkeypatch.setattr(sync_module.time, "sleep", fake_sleep)
    return recorded


def test_retries_a_500_then_succeeds(stub, sleeps):
    stub.script(
        "GET",
        "/api/v1/status",
        (500, envelope("internal_error", "boom")),
        (200, {"overall_health": "healthy"}),
    )
    with GuardClient(stub.url, "t0k", flush_interval=0) as guard:
        assert guard.get_system_status() == {"overall_health": "healthy"}
    assert len(stub.calls("GET", "/api/v1/status")) == 2
    assert len(sleeps) == 1
    assert stub.calls()[0].headers["authorization"] == "Bearer t0k"


def test_429_honours_retry_after(stub, sleeps):
    stub.script(
        "GET",
        "/api/v1/status",
        (429, envelope("rate_limited", "slow down"), {"Retry-After": "7"}),
        (200, {"overall_health": "healthy"}),
    )
    with GuardClient(stub.url, stub.token, flush_interval=0) as guard:
        assert guard.get_system_status()["overall_health"] == "healthy"
    assert sleeps == [7.0]


def test_exponential_backoff_then_gives_up_and_logs(stub, sleeps, caplog):
    stub.script("GET", "/api/v1/status", *[(503, envelope("service_unavailable", "db down"))] * 4)
    with (
        GuardClient(stub.url, stub.token, retries=3, backoff=1.0, flush_interval=0) as guard,
        caplog.at_level(logging.WARNING, logger="pipeline_guard.client"),
    ):
        assert guard.get_system_status() is None
    assert len(stub.calls("GET", "/api/v1/status")) == 4
    assert (
        len(sleeps) == 3 and 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0 and 2.0 <= sleeps[2] <= 4.0
    )
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
    stub.script(
        "GET",
        "/api/v1/components/nope",
        (404, envelope("not_found", "component 'nope' not found", {"name": "nope"})),
    )
    with (
        GuardClient(stub.url, stub.token, raise_errors=True, flush_interval=0) as guard,
        pytest.raises(GuardAPIError) as caught,
    ):
        guard.get_component("nope")
    assert caught.value.status == 404
    assert caught.value.type == "not_found"
    assert caught.value.message == "component 'nope' not found"
    assert caught.value.details == {"name": "nope"}
    assert sleeps == []  # a 404 is not retried


def test_raise_errors_connection_error(sleeps):
    guard = GuardClient(
        f"http://127.0.0.1:{free_port()}", "t", retries=1, raise_errors=True, flush_interval=0
    )
    with pytest.raises(GuardConnectionError):
        guard.get_system_status()
    guard._closed.set()  # nothing buffered; skip the final flush
    guard._http.close()


def test_batches_flush_on_size_and_on_close(stub):
    with GuardClient(stub.url, stub.token, batch_size=3, flush_interval=0) as guard:
        for i in range(7):
            guard.record_metric("etl", "rows", i, labels={"stage": "load"}, timestamp=1_700_000_000 + i)
        assert [points_in(c.body) for c in stub.calls("POST", BATCH)] == [3, 3]
        assert guard.pending == 1
    batches = stub.calls("POST", BATCH)
    assert [points_in(c.body) for c in batches] == [3, 3, 1]
    [first] = batches[0].body["series"]  # the series shape: one series, its three points as arrays
    assert first["component"] == "etl" and first["metric_name"] == "rows" and first["values"] == [0, 1, 2]
    assert first["labels"] == {"stage": "load"}
    assert first["timestamps"][0].startswith("2023-11-14T22:13:20")


def test_batches_flush_on_interval(stub):
    with GuardClient(stub.url, stub.token, batch_size=100, flush_interval=0.1) as guard:
        guard.record_metric("etl", "rows", 1)
        deadline = time.monotonic() + 10
        while not stub.calls("POST", BATCH) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(stub.calls("POST", BATCH)) == 1
        assert guard.pending == 0


def test_rejected_points_are_dropped_unreachable_points_are_kept(stub, sleeps):
    stub.script("POST", BATCH, (422, envelope("validation_error", "bad point")))
    with GuardClient(stub.url, stub.token, batch_size=10, flush_interval=0) as guard:
        guard.record_metric("etl", "rows", 1)
        assert guard.flush() == 0 and guard.pending == 0  # rejected: not retried forever
        stub.script("POST", BATCH, *[(503, envelope("service_unavailable", "later"))] * 4)
        guard.record_metric("etl", "rows", 2)
        assert guard.flush() == 0 and guard.pending == 1  # kept for the next flush
        assert guard.flush() == 1 and guard.pending == 0


def test_record_batch_sends_now_in_chunks(stub):
    with GuardClient(stub.url, stub.token, batch_size=2, flush_interval=0) as guard:
        sent = guard.record_batch(
            [
                ("etl", "rows", 1),
                {"component": "etl", "metric_name": "lag", "value": 2.5},
                ("etl", "rows", 3, {"k": "v"}),
            ]
        )
    assert sent == 3
    assert [points_in(c.body) for c in stub.calls("POST", BATCH)] == [2, 1]


def heartbeat_component(stub, name: str = "nightly") -> str:
    """Register a heartbeat component on the real guard; returns its ping token."""
    with GuardClient(stub.upstream, stub.token, raise_errors=True, flush_interval=0) as admin:
        admin.create_component({"name": name, "check": {"kind": "heartbeat", "period": "1h"}})
        return admin.request("POST", f"/api/v1/components/{name}/ping-token")["token"]


def test_job_reports_start_and_success(stub):
    ping = heartbeat_component(stub)
    with (
        GuardClient(stub.url, stub.token, flush_interval=0, raise_errors=True) as guard,
        guard.job("nightly", ping_token=ping) as run,
    ):
        guard.record_metric("nightly", "rows", 10)
        run.message = "10 rows"
    beats = stub.calls("POST", "/api/v1/components/nightly/heartbeat")
    assert [b.body["status"] for b in beats] == ["start", "success"]
    assert beats[1].body["duration_seconds"] >= 0 and beats[1].body["message"] == "10 rows"
    assert all(b.headers["x-ping-token"] == ping for b in beats)
    assert "authorization" not in beats[0].headers  # a ping token is enough
    # the metrics were flushed before the success was reported
    order = [r.path for r in stub.requests]
    assert order.index(BATCH) < len(order) - 1


def test_job_reports_failure_and_the_exception_propagates(stub):
    heartbeat_component(stub)
    guard = GuardClient(stub.url, stub.token, flush_interval=0, raise_errors=True)

    @guard.job("nightly")
    def work(n):
        raise ValueError(f"bad input {n}")

    with pytest.raises(ValueError, match="bad input 3"):
        work(3)
    beats = stub.calls("POST", "/api/v1/components/nightly/heartbeat")
    assert [b.body["status"] for b in beats] == ["start", "fail"]
    assert beats[1].body["message"] == "ValueError: bad input 3"
    assert beats[1].headers["authorization"] == f"Bearer {stub.token}"
    guard.close()


def test_job_failure_reporting_errors_never_hide_the_job_error(sleeps):
    guard = GuardClient(
        f"http://127.0.0.1:{free_port()}", "t", retries=0, flush_interval=0, raise_errors=False
    )
    with pytest.raises(KeyError), guard.job("nightly"):
        raise KeyError("x")
    guard.close()


def test_login_with_username_and_password(stub, live):
    with GuardClient(
        stub.url, username=live.username, password=live.password, flush_interval=0, raise_errors=True
    ) as guard:
        assert guard.list_components(labels={"team": "data"}, region="eu")["items"] == []
    login, listing = stub.requests[0], stub.requests[1]
    assert login.path == "/api/v1/auth/token" and login.body == {
        "username": live.username,
        "password": live.password,
    }
    assert listing.headers["authorization"] == f"Bearer {guard.token}"
    assert ("label", "team=data") in listing.query and ("region", "eu") in listing.query


# --- the async client -------------------------------------------------------------------------


async def test_async_client_retries_batches_and_jobs(stub, monkeypatch):
    import asyncio

    import app.client.aio as aio_module

    await asyncio.to_thread(heartbeat_component, stub)
    delays: list[float] = []
    real_sleep, test_loop = asyncio.sleep, asyncio.get_running_loop()

    async def fake_sleep(seconds, *args, **kwargs):
        # `asyncio.sleep` is patched process-wide: only the client's own sleeps (on this test's loop)
        # are recorded and skipped. The guard and the proxy run on other threads' loops and keep real
        # sleeps; made instant, their idle loops would spin and starve the request under load.
        if asyncio.get_running_loop() is not test_loop:
            return await real_sleep(seconds, *args, **kwargs)
        delays.append(seconds)
        return await real_sleep(0)

    stub.script(
        "GET",
        "/api/v1/status",
        (502, None),
        (429, None, {"Retry-After": "3"}),
        (200, {"overall_health": "ok"}),
    )
    async with AsyncGuardClient(stub.url, stub.token, batch_size=2, flush_interval=0) as guard:
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
    assert [points_in(c.body) for c in stub.calls("POST", BATCH)] == [2, 1]
    beats = [b.body["status"] for b in stub.calls("POST", "/api/v1/components/nightly/heartbeat")]
    assert beats == ["start", "success", "start", "fail"]


async def test_async_client_raise_errors(stub):
    stub.script("POST", "/api/v1/healing/etl", (409, envelope("conflict", "healing already running")))
    async with AsyncGuardClient(stub.url, stub.token, raise_errors=True, flush_interval=0) as guard:
        with pytest.raises(GuardAPIError, match="healing already running"):
            await guard.heal("etl")


async def test_async_connection_refused_is_logged(caplog):
    async with AsyncGuardClient(
        f"http://127.0.0.1:{free_port()}", "t", retries=1, backoff=0.01, flush_interval=0
    ) as guard:
        with caplog.at_level(logging.WARNING, logger="pipeline_guard.client"):
            assert await guard.get_system_status() is None
    assert "get_system_status failed" in caplog.text


# --- a guard that accepts connections and never answers ----------------------------------------


class SilentServer:
    """Accepts TCP connections on loopback, reads, never answers; counts the connections."""

    def __init__(self) -> None:
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent():
    server = SilentServer()
    yield server
    server.close()


def test_a_guard_that_never_answers_costs_each_call_one_deadline(silent):
    # timeout 0.5 s and 3 retries would be 4 requests per call; a 0.8 s deadline leaves room for 2 at most,
    # and close() gives its last flush a single request.
    guard = GuardClient(silent.url, "t", timeout=0.5, deadline=0.8, retries=3, backoff=0.05, flush_interval=0)
    with guard.job("nightly"):
        guard.record_metric("nightly", "rows", 1)
    after_job = len(silent.accepted)
    assert 3 <= after_job <= 3 * 2  # start, the flush and success: each gave up at its deadline
    guard.record_metric("nightly", "rows", 2)
    guard.close()
    assert len(silent.accepted) - after_job == 1
    assert guard.pending == 0


async def test_async_client_never_waits_past_its_deadline(silent):
    async with AsyncGuardClient(
        silent.url, "t", timeout=0.5, deadline=0.8, retries=3, backoff=0.05, flush_interval=0
    ) as guard:
        assert await guard.get_system_status() is None
        assert 1 <= len(silent.accepted) <= 2
