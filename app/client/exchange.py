"""The sans-io retry loop, the point buffer and the settings shared by the sync and async clients."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx

from app.client.core import (
    GuardAPIError,
    GuardClientError,
    GuardConnectionError,
    MetricPoint,
    RetryPolicy,
    RunIdSupport,
    is_retryable_status,
    parse_error,
)


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


RETRY, RELOGIN, DONE = "retry", "relogin", "done"


class Exchange:
    """The retry and re-login decisions of one API call, shared by the sync and async clients.

    Sans-io: the client does the I/O (and the sleeping) and asks this object what to do next, so the
    two clients cannot drift apart in behaviour.
    """

    def __init__(self, client: Any, call: Any, log: logging.Logger):
        self.client = client
        self.call = call
        self.log = log
        self.attempt = 0
        self.relogged = False
        # The whole call, retries and waits included, ends by this time: a guard that accepts
        # connections and never answers must not hold the pipeline for retries x timeout.
        self.deadline_at = time.monotonic() + client.call_deadline()

    def remaining(self) -> float:
        return self.deadline_at - time.monotonic()

    def request_timeout(self) -> httpx.Timeout:
        """The client's timeout, cut to what is left of the call's deadline (raises when nothing is)."""
        left = self.remaining()
        if left <= 0:
            raise GuardConnectionError(
                f"{self.call.method} {self.client.url}{self.call.path}: "
                f"no answer within the call's deadline ({self.client.deadline:g}s)"
            )
        return httpx.Timeout(min(self.client.timeout, left))

    def transport_error(self, exc: httpx.TransportError) -> float:
        """Seconds to wait before retrying; raises GuardConnectionError when out of retries or time."""
        call = self.call
        delay = self.client.policy.delay(self.attempt)
        if self.attempt >= self.client.policy.retries or delay >= self.remaining():
            raise GuardConnectionError(
                f"{call.method} {self.client.url}{call.path}: {type(exc).__name__}: {exc}"
            ) from exc
        self.log.info(
            "guard unreachable (%s), retry %d in %.2fs", type(exc).__name__, self.attempt + 1, delay
        )
        self.attempt += 1
        return delay

    def response(self, response: httpx.Response) -> tuple[str, Any]:
        """(RETRY, seconds) / (RELOGIN, None) / (DONE, parsed body); raises GuardAPIError on a final
        4xx/5xx."""
        client, status = self.client, response.status_code
        if (
            status == 401
            and self.call.authenticated
            and client.username
            and client.password
            and not self.relogged
        ):
            self.relogged = True
            client.token = None
            return RELOGIN, None
        delay = client.policy.delay(self.attempt, response) if is_retryable_status(status) else 0.0
        if is_retryable_status(status) and self.attempt < client.policy.retries and delay < self.remaining():
            self.log.info("guard answered %d, retry %d in %.2fs", status, self.attempt + 1, delay)
            self.attempt += 1
            return RETRY, delay
        if status >= 400:
            raise parse_error(response)
        if not response.content:
            return DONE, None
        try:
            return DONE, response.json()
        except ValueError:
            return DONE, response.text


MAX_BUFFER_FACTOR = 20  # keep at most batch_size * this many unsent points while the guard is away


def rejected_for_good(exc: Exception) -> bool:
    """A 4xx other than 429: the guard refused these points; sending them again would fail again."""
    return isinstance(exc, GuardAPIError) and 400 <= exc.status < 500 and exc.status != 429


def series_shape_refused(exc: Exception) -> bool:
    """A guard from before the series shape refused a ``{"series": [...]}`` batch (its exact answer):
    the same points go again as ``{"points": [...]}``, and every batch after them."""
    return (
        isinstance(exc, GuardAPIError)
        and exc.status == 422
        and exc.details.get("fields") == [{"field": "series", "message": "unknown field"}]
    )


def requeue(buffer: list[Any], unsent: list[Any], limit: int, *, closed: bool) -> tuple[list[Any], int]:
    """The buffer after a failed send: unsent points go back in front and only the newest ``limit``
    are kept; once the client is closed nothing is kept. Returns (new buffer, points dropped)."""
    if closed:
        return [], len(unsent) + len(buffer)
    merged = unsent + buffer
    dropped = max(0, len(merged) - limit)
    return merged[dropped:], dropped


def report_requeue(
    log: logging.Logger, raise_errors: bool, unsent: int, dropped: int, exc: Exception
) -> None:
    log.warning(
        "pipeline guard: could not send %d metric points (%s)%s",
        unsent,
        exc,
        f"; dropped {dropped}" if dropped else "; will retry",
    )
    if raise_errors:
        raise exc if isinstance(exc, GuardClientError) else GuardClientError(str(exc))


def report_failure(log: logging.Logger, raise_errors: bool, what: str, exc: Exception) -> None:
    """Log a failed call; raise it only when the caller asked for errors."""
    log.warning("pipeline guard: %s failed: %s", what, exc)
    if raise_errors:
        if isinstance(exc, GuardClientError):
            raise exc
        raise GuardClientError(f"{what} failed: {exc}") from exc


class ClientSettings:
    """What the sync and async clients keep alike: where, who, and how hard to try."""

    def _configure(
        self,
        url: str,
        token: str | None,
        *,
        username: str | None,
        password: str | None,
        retries: int,
        raise_errors: bool,
        batch_size: int,
        flush_interval: float,
        backoff: float,
        timeout: float = 5.0,
        deadline: float | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = float(timeout)
        # One call (its retries and back-off included) never takes longer than this.
        self.deadline = float(deadline) if deadline is not None else 2 * self.timeout
        self.token = token
        self.username = username
        self.password = password
        self.raise_errors = raise_errors
        self.batch_size = max(1, int(batch_size))
        self.flush_interval = flush_interval
        self.policy = RetryPolicy(retries=max(0, int(retries)), backoff=backoff)
        self._buffer: list[MetricPoint] = []
        self._run_ids = RunIdSupport()
        # Batches go in the series shape until a guard from before it refuses one (then as points).
        self.series_shape = True

    def call_deadline(self) -> float:
        """The deadline of the next call: once closing, one request's timeout at most (the pipeline is
        exiting)."""
        return min(self.deadline, self.timeout) if self.is_closing() else self.deadline

    def is_closing(self) -> bool:
        return False
