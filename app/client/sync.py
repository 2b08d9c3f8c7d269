"""``GuardClient``: the synchronous client (threads, scripts, cron jobs)."""

from __future__ import annotations

import atexit
import contextlib
import functools
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from types import TracebackType
from typing import Any, ParamSpec, Self, TypeVar

import httpx

from app.client import calls
from app.client.core import (
    API,
    USER_AGENT,
    GuardAPIError,
    MetricPoint,
    chunks,
    clean_params,
    failure_message,
    heartbeat_body,
    log,
    run_id_refused,
    segment,
    without_run_id,
)
from app.client.exchange import (
    DONE,
    MAX_BUFFER_FACTOR,
    RETRY,
    ClientSettings,
    Exchange,
    Stopwatch,
    rejected_for_good,
    report_failure,
    report_requeue,
    requeue,
    series_shape_refused,
)
from app.client.maintenance import Duration, Maintenance
from app.client.operations import Operations

P = ParamSpec("P")
T = TypeVar("T")


class GuardClient(ClientSettings, Operations[Any]):
    """Report to a Pipeline Guard from a pipeline. Thread-safe; use as a context manager or ``close()``.

    ``token`` is a bearer token; or give ``username``/``password`` and the client logs in (and again
    when its token expires). ``record_metric`` buffers points and sends them in batches of
    ``batch_size``, at the latest every ``flush_interval`` seconds and on ``close()``. Every call is
    retried ``retries`` times with exponential back-off on connection errors, 429 (honouring
    Retry-After) and 5xx, within ``deadline`` seconds for the whole call (default twice ``timeout``;
    ``close()`` gives its last flush one ``timeout``), so a guard that never answers cannot hold the
    pipeline. Failures are logged; they raise (``GuardClientError``) only when
    ``raise_errors=True``; otherwise the call returns ``None``.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 5.0,
        retries: int = 3,
        raise_errors: bool = False,
        batch_size: int = 500,
        flush_interval: float = 2.0,
        backoff: float = 0.5,
        deadline: float | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        self._configure(
            url,
            token,
            username=username,
            password=password,
            retries=retries,
            raise_errors=raise_errors,
            batch_size=batch_size,
            flush_interval=flush_interval,
            backoff=backoff,
            timeout=timeout,
            deadline=deadline,
        )
        self._http = httpx.Client(
            base_url=self.url, timeout=timeout, transport=transport, headers={"User-Agent": USER_AGENT}
        )
        self._buffer_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._login_lock = threading.Lock()
        self._closed = threading.Event()
        self._flusher: threading.Thread | None = None
        self._exit_hook = functools.partial(_close_at_exit, weakref.ref(self))
        atexit.register(self._exit_hook)

    # --- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Flush what is buffered (one attempt), stop the background flusher, close connections."""
        if self._closed.is_set():
            return
        self._closed.set()
        atexit.unregister(self._exit_hook)
        try:
            self.flush()
        finally:
            if self._flusher is not None and self._flusher is not threading.current_thread():
                self._flusher.join(timeout=self._http.timeout.read or 5.0)
            self._http.close()

    def is_closing(self) -> bool:
        return self._closed.is_set()

    # --- transport --------------------------------------------------------------------------
    def _auth_headers(self) -> dict[str, str]:
        if self.token is None and self.username and self.password:
            self._login()
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _login(self) -> None:
        with self._login_lock:
            call = calls.Call(
                "POST",
                f"{API}/auth/token",
                data={"username": self.username or "", "password": self.password or ""},
                authenticated=False,
            )
            body = self._request(call)
            self.token = body["access_token"]

    def _request(self, call: calls.Call) -> Any:
        """One call with retries; raises GuardClientError. Returns the parsed JSON body (or None)."""
        exchange = Exchange(self, call, log)
        while True:
            headers = dict(call.headers)
            if call.authenticated:
                headers.update(self._auth_headers())
            try:
                response = self._http.request(
                    call.method,
                    call.path,
                    params=tuple(call.params) or None,
                    json=call.json,
                    data=call.data,
                    headers=headers,
                    timeout=exchange.request_timeout(),
                )
            except httpx.TransportError as exc:
                value = exchange.transport_error(exc)
                time.sleep(value)
                continue
            action, value = exchange.response(response)
            if action == RETRY:
                time.sleep(value)
            elif action == DONE:
                return value

    def _fail(self, what: str, exc: Exception) -> None:
        report_failure(log, self.raise_errors, what, exc)

    def _send(self, call: calls.Call, what: str | None = None) -> Any:
        try:
            return self._request(call)
        except Exception as exc:  # noqa: BLE001 - never crash the caller unless asked to
            self._fail(what or f"{call.method} {call.path}", exc)
            return None

    def _invoke(self, build: Callable[P, calls.Call], /, *args: P.args, **kwargs: P.kwargs) -> Any:
        try:
            call = build(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - bad arguments are reported like any other failure
            self._fail(build.__name__, exc)
            return None
        return self._send(call, build.__name__)

    def request(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None
    ) -> Any:
        """Any API call (``path`` like ``/api/v1/...``), with the client's auth, retries and error
        handling."""
        return self._send(calls.Call(method.upper(), path, clean_params(params), json=json))

    # --- metrics ----------------------------------------------------------------------------
    def record_metric(
        self,
        component: str,
        metric_name: str,
        value: float,
        labels: Mapping[str, Any] | None = None,
        timestamp: datetime | float | str | None = None,
    ) -> None:
        """Buffer one point; it is sent with the next batch (size, interval, ``flush()`` or ``close()``)."""
        try:
            point = MetricPoint.make(component, metric_name, value, labels, timestamp)
        except Exception as exc:  # noqa: BLE001
            self._fail("record_metric", exc)
            return
        with self._buffer_lock:
            self._buffer.append(point)
            full = len(self._buffer) >= self.batch_size
            self._ensure_flusher()
        if full:
            self.flush()

    def record_batch(self, points: Iterable[Any]) -> int:
        """Send points now (dicts, MetricPoints or tuples), in chunks of ``batch_size``.

        Returns how many were accepted."""
        try:
            coerced = [MetricPoint.coerce(p) for p in points]
        except Exception as exc:  # noqa: BLE001
            self._fail("record_batch", exc)
            return 0
        sent = 0
        for chunk in chunks(coerced, self.batch_size):
            try:
                self._post_batch(chunk)
            except Exception as exc:  # noqa: BLE001
                self._fail(f"record_batch ({len(coerced) - sent} points not sent)", exc)
                break
            sent += len(chunk)
        return sent

    def _post_batch(self, chunk: list[MetricPoint]) -> None:
        if self.series_shape:
            try:
                self._request(calls.record_batch(chunk))
                return
            except GuardAPIError as exc:
                if not series_shape_refused(exc):
                    raise
                self.series_shape = False  # a guard from before the series shape: points from now on
        self._request(calls.record_batch(chunk, series_shape=False))

    def flush(self) -> int:
        """Send buffered points now. Returns how many were sent; unsent points stay buffered (bounded)."""
        with self._flush_lock:
            with self._buffer_lock:
                pending, self._buffer = self._buffer, []
            sent = 0
            for index in range(0, len(pending), self.batch_size):
                chunk = pending[index : index + self.batch_size]
                try:
                    self._post_batch(chunk)
                    sent += len(chunk)
                except Exception as exc:  # noqa: BLE001
                    if rejected_for_good(exc):
                        log.warning("pipeline guard: dropped %d metric points: %s", len(chunk), exc)
                        continue
                    self._requeue(pending[index:], exc)
                    break
            return sent

    def _requeue(self, unsent: list[MetricPoint], exc: Exception) -> None:
        with self._buffer_lock:
            self._buffer, dropped = requeue(
                self._buffer, unsent, self.batch_size * MAX_BUFFER_FACTOR, closed=self._closed.is_set()
            )
        report_requeue(log, self.raise_errors, len(unsent), dropped, exc)

    def _ensure_flusher(self) -> None:
        if (
            self._flusher is None
            and self.flush_interval
            and self.flush_interval > 0
            and not self._closed.is_set()
        ):
            self._flusher = threading.Thread(
                target=self._flush_loop, name="pipeline-guard-flush", daemon=True
            )
            self._flusher.start()

    def _flush_loop(self) -> None:
        while not self._closed.wait(self.flush_interval):
            if self._buffer:
                try:
                    self.flush()
                except Exception as exc:  # noqa: BLE001 - the flusher thread must survive
                    log.debug("background flush failed: %s", exc)

    @property
    def pending(self) -> int:
        """Points buffered and not yet sent."""
        return len(self._buffer)

    # --- heartbeats and jobs ----------------------------------------------------------------
    def heartbeat(
        self,
        component: str,
        status: str | None = None,
        duration_seconds: float | None = None,
        message: str | None = None,
        ping_token: str | None = None,
        *,
        rid: str | uuid.UUID | None = None,
    ) -> Any:
        """Tell the guard the component is alive (``status``: start, success or fail). ``rid`` (a UUID)
        names the run the heartbeat reports: its finish is timed from the same rid's ``start``, and
        the finish of a run a recovery action replaced judges nothing."""
        try:
            body = self._run_ids.body(heartbeat_body(status, duration_seconds, message, rid))
        except ValueError as exc:
            self._fail("heartbeat", exc)
            return None
        call = calls.Call(
            "POST",
            f"{API}/components/{segment(component)}/heartbeat",
            json=body,
            headers={"X-Ping-Token": ping_token} if ping_token else {},
            authenticated=ping_token is None,
        )
        try:
            return self._request(call)
        except Exception as exc:  # noqa: BLE001 - never crash the caller unless asked to
            if not run_id_refused(exc, body):
                self._fail(f"heartbeat {component}", exc)
                return None
        # A guard from before run ids: the run goes unnamed, as it did, and the next ones too for a while.
        self._run_ids.refused()
        log.info("pipeline guard: the guard takes no run ids; heartbeat %s sent without one", component)
        return self._send(replace(call, json=without_run_id(body)), f"heartbeat {component}")

    def job(self, component: str, ping_token: str | None = None) -> Job:
        """Report a job run: ``with guard.job("etl"):`` or ``@guard.job("etl")``.

        Sends ``start`` on entry, then ``success`` or ``fail`` (with the exception's type and text)
        and the duration; flushes buffered metrics first. The job's own exception always propagates.
        Each run has its own id (``rid``, a new UUID, readable as ``run.rid`` in the block) sent with
        its pings: a stuck run's late ``fail`` after a recovery action started judges nothing.
        """
        return Job(self, component, ping_token)

    # --- maintenance windows (app/client/maintenance.py) ------------------------------------
    def maintenance(
        self, component: str, duration: Duration, comment: str | None = None, ping_token: str | None = None
    ) -> Maintenance:
        """``with guard.maintenance("etl", "30m"):`` mutes notifications and healing for the
        component while the block runs (at most ``duration``); checks keep running."""
        return Maintenance(self, component, duration, comment, ping_token)


class Job:
    """A context manager and decorator reporting one run of a batch job through heartbeats."""

    def __init__(self, client: GuardClient, component: str, ping_token: str | None = None):
        self.client = client
        self.component = component
        self.ping_token = ping_token
        self.message: str | None = None  # set it inside the block to report it with the success
        self.rid: str | None = None  # the run's id (a UUID), new for each run, sent with each of its pings
        self._watch: Stopwatch | None = None

    def __enter__(self) -> Self:
        self._watch = Stopwatch()
        self.rid = str(uuid.uuid4())
        self.client.heartbeat(self.component, "start", ping_token=self.ping_token, rid=self.rid)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        duration = self._watch.elapsed if self._watch else None
        if exc is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
            self.client.flush()
            self.client.heartbeat(
                self.component, "success", duration, self.message, ping_token=self.ping_token, rid=self.rid
            )
            return
        # The job failed: report it, but never let a reporting error hide the job's own exception.
        try:
            self.client.flush()
            self.client.heartbeat(
                self.component,
                "fail",
                duration,
                failure_message(exc),
                ping_token=self.ping_token,
                rid=self.rid,
            )
        except Exception as report_error:  # noqa: BLE001
            log.warning(
                "pipeline guard: could not report the failure of %s: %s", self.component, report_error
            )

    def __call__(self, func: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            with Job(self.client, self.component, self.ping_token):
                return func(*args, **kwargs)

        return wrapper


def _close_at_exit(ref: weakref.ref[GuardClient]) -> None:
    client = ref()
    if client is not None:
        with contextlib.suppress(Exception):  # the interpreter is exiting: nobody is left to tell
            client.close()
