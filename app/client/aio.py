"""``AsyncGuardClient``: the asyncio client (same methods as ``GuardClient``, awaited)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
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
from app.client.maintenance import AsyncMaintenance, Duration
from app.client.operations import Operations

P = ParamSpec("P")
T = TypeVar("T")


class AsyncGuardClient(ClientSettings, Operations[Coroutine[Any, Any, Any]]):
    """The asyncio twin of :class:`app.client.GuardClient`; use ``async with`` or ``await close()``.

    The background flush runs as a task of the loop that recorded the first point.
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
        transport: httpx.AsyncBaseTransport | None = None,
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
        self._http = httpx.AsyncClient(
            base_url=self.url, timeout=timeout, transport=transport, headers={"User-Agent": USER_AGENT}
        )
        self._flush_lock: asyncio.Lock | None = None
        self._flusher: asyncio.Task | None = None
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Flush what is buffered (one attempt), stop the background flusher, close connections."""
        if self._closed:
            return
        self._closed = True
        if self._flusher is not None:
            self._flusher.cancel()
            # Cancelled on purpose (its failures were logged); the flush below sends what is left.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._flusher
        try:
            await self.flush()
        finally:
            await self._http.aclose()

    def is_closing(self) -> bool:
        return self._closed

    # --- transport --------------------------------------------------------------------------
    async def _auth_headers(self) -> dict[str, str]:
        if self.token is None and self.username and self.password:
            body = await self._request(
                calls.Call(
                    "POST",
                    f"{API}/auth/token",
                    authenticated=False,
                    data={"username": self.username, "password": self.password},
                )
            )
            self.token = body["access_token"]
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def _request(self, call: calls.Call) -> Any:
        """One call with retries; raises GuardClientError. Returns the parsed JSON body (or None)."""
        exchange = Exchange(self, call, log)
        while True:
            headers = dict(call.headers)
            if call.authenticated:
                headers.update(await self._auth_headers())
            try:
                response = await self._http.request(
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
                await asyncio.sleep(value)
                continue
            action, value = exchange.response(response)
            if action == RETRY:
                await asyncio.sleep(value)
            elif action == DONE:
                return value

    def _fail(self, what: str, exc: Exception) -> None:
        report_failure(log, self.raise_errors, what, exc)

    async def _send(self, call: calls.Call, what: str | None = None) -> Any:
        try:
            return await self._request(call)
        except Exception as exc:  # noqa: BLE001 - never crash the caller unless asked to
            self._fail(what or f"{call.method} {call.path}", exc)
            return None

    async def _invoke(self, build: Callable[P, calls.Call], /, *args: P.args, **kwargs: P.kwargs) -> Any:
        try:
            call = build(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - bad arguments are reported like any other failure
            self._fail(build.__name__, exc)
            return None
        return await self._send(call, build.__name__)

    async def request(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None
    ) -> Any:
        return await self._send(calls.Call(method.upper(), path, clean_params(params), json=json))

    # --- metrics ----------------------------------------------------------------------------
    async def record_metric(
        self,
        component: str,
        metric_name: str,
        value: float,
        labels: Mapping[str, Any] | None = None,
        timestamp: datetime | float | str | None = None,
    ) -> None:
        """Buffer one point; it is sent with the next batch (size, interval, ``flush()`` or ``close()``)."""
        try:
            self._buffer.append(MetricPoint.make(component, metric_name, value, labels, timestamp))
        except Exception as exc:  # noqa: BLE001
            self._fail("record_metric", exc)
            return
        self._ensure_flusher()
        if len(self._buffer) >= self.batch_size:
            await self.flush()

    async def record_batch(self, points: Iterable[Any]) -> int:
        """Send points now, in chunks of ``batch_size``. Returns how many were accepted."""
        try:
            coerced = [MetricPoint.coerce(p) for p in points]
        except Exception as exc:  # noqa: BLE001
            self._fail("record_batch", exc)
            return 0
        sent = 0
        for chunk in chunks(coerced, self.batch_size):
            try:
                await self._post_batch(chunk)
            except Exception as exc:  # noqa: BLE001
                self._fail(f"record_batch ({len(coerced) - sent} points not sent)", exc)
                break
            sent += len(chunk)
        return sent

    async def _post_batch(self, chunk: list[MetricPoint]) -> None:
        if self.series_shape:
            try:
                await self._request(calls.record_batch(chunk))
                return
            except GuardAPIError as exc:
                if not series_shape_refused(exc):
                    raise
                self.series_shape = False  # a guard from before the series shape: points from now on
        await self._request(calls.record_batch(chunk, series_shape=False))

    async def flush(self) -> int:
        """Send buffered points now. Returns how many were sent; unsent points stay buffered (bounded)."""
        if self._flush_lock is None:
            self._flush_lock = asyncio.Lock()
        async with self._flush_lock:
            pending, self._buffer = self._buffer, []
            sent = 0
            for index in range(0, len(pending), self.batch_size):
                chunk = pending[index : index + self.batch_size]
                try:
                    await self._post_batch(chunk)
                    sent += len(chunk)
                except Exception as exc:  # noqa: BLE001
                    if rejected_for_good(exc):
                        log.warning("pipeline guard: dropped %d metric points: %s", len(chunk), exc)
                        continue
                    self._requeue(pending[index:], exc)
                    break
            return sent

    def _requeue(self, unsent: list[MetricPoint], exc: Exception) -> None:
        self._buffer, dropped = requeue(
            self._buffer, unsent, self.batch_size * MAX_BUFFER_FACTOR, closed=self._closed
        )
        report_requeue(log, self.raise_errors, len(unsent), dropped, exc)

    def _ensure_flusher(self) -> None:
        if self._flusher is None and self.flush_interval and self.flush_interval > 0 and not self._closed:
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush_loop(), name="pipeline-guard-flush"
            )

    async def _flush_loop(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.flush_interval)
            if self._buffer:
                try:
                    await self.flush()
                except Exception as exc:  # noqa: BLE001 - the flusher must survive
                    log.debug("background flush failed: %s", exc)

    @property
    def pending(self) -> int:
        return len(self._buffer)

    # --- heartbeats and jobs ----------------------------------------------------------------
    async def heartbeat(
        self,
        component: str,
        status: str | None = None,
        duration_seconds: float | None = None,
        message: str | None = None,
        ping_token: str | None = None,
        *,
        rid: str | uuid.UUID | None = None,
    ) -> Any:
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
            return await self._request(call)
        except Exception as exc:  # noqa: BLE001 - never crash the caller unless asked to
            if not run_id_refused(exc, body):
                self._fail(f"heartbeat {component}", exc)
                return None
        # A guard from before run ids: the run goes unnamed, as it did, and the next ones too for a while.
        self._run_ids.refused()
        log.info("pipeline guard: the guard takes no run ids; heartbeat %s sent without one", component)
        return await self._send(replace(call, json=without_run_id(body)), f"heartbeat {component}")

    def job(self, component: str, ping_token: str | None = None) -> AsyncJob:
        """``async with guard.job("etl"):`` or ``@guard.job("etl")`` on a coroutine function."""
        return AsyncJob(self, component, ping_token)

    # --- maintenance windows (app/client/maintenance.py) ------------------------------------
    def maintenance(
        self, component: str, duration: Duration, comment: str | None = None, ping_token: str | None = None
    ) -> AsyncMaintenance:
        """``async with guard.maintenance("etl", "30m"):`` (see ``GuardClient.maintenance``)."""
        return AsyncMaintenance(self, component, duration, comment, ping_token)


class AsyncJob:
    def __init__(self, client: AsyncGuardClient, component: str, ping_token: str | None = None):
        self.client = client
        self.component = component
        self.ping_token = ping_token
        self.message: str | None = None
        self.rid: str | None = None  # the run's id (a UUID), new for each run, sent with each of its pings
        self._watch: Stopwatch | None = None

    async def __aenter__(self) -> Self:
        self._watch = Stopwatch()
        self.rid = str(uuid.uuid4())
        await self.client.heartbeat(self.component, "start", ping_token=self.ping_token, rid=self.rid)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        duration = self._watch.elapsed if self._watch else None
        if exc is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
            await self.client.flush()
            await self.client.heartbeat(
                self.component, "success", duration, self.message, ping_token=self.ping_token, rid=self.rid
            )
            return
        try:
            await self.client.flush()
            await self.client.heartbeat(
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

    def __call__(self, func: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        @functools.wraps(func)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            async with AsyncJob(self.client, self.component, self.ping_token):
                return await func(*args, **kwargs)

        return wrapper
