"""What the sync and async clients share: errors, request shapes, retry policy, point encoding."""

from __future__ import annotations

import logging
import math
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote
from uuid import UUID

import httpx

log = logging.getLogger("pipeline_guard.client")

API = "/api/v1"
USER_AGENT = "pipeline-guard-client"
MAX_BACKOFF = 30.0
MAX_MESSAGE = 1000


class GuardClientError(Exception):
    """Base of everything the client raises (only when ``raise_errors=True``)."""


class GuardConnectionError(GuardClientError):
    """The guard could not be reached (after the retries)."""


class GuardAPIError(GuardClientError):
    """The guard answered with an error envelope ``{"error": {"type", "message", "details", ...}}``."""

    def __init__(self, status: int, type: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(f"{status} {type}: {message}")
        self.status = status
        self.type = type
        self.message = message
        self.details = details or {}


def parse_error(response: httpx.Response) -> GuardAPIError:
    """The envelope's type and message; something sensible when the body is not an envelope."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return GuardAPIError(
            response.status_code,
            str(error.get("type", "error")),
            str(error.get("message", response.reason_phrase)),
            error.get("details") or {},
        )
    if isinstance(body, dict) and "detail" in body:  # a plain FastAPI/Starlette error
        return GuardAPIError(response.status_code, "error", str(body["detail"]))
    text = response.text.strip()[:200] or response.reason_phrase
    return GuardAPIError(response.status_code, "error", text)


def is_retryable_status(status: int) -> bool:
    return status == 429 or status >= 500


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), capped; None when absent or unreadable."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            return None
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_BACKOFF)


@dataclass
class RetryPolicy:
    retries: int = 3
    backoff: float = 0.5

    def delay(self, attempt: int, response: httpx.Response | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based): Retry-After, else exponential +
        jitter."""
        if response is not None:
            hinted = retry_after_seconds(response)
            if hinted is not None:
                return hinted
        base = min(self.backoff * (2**attempt), MAX_BACKOFF)
        return base * (0.5 + random.random() / 2)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration_seconds(value: float | str) -> float:
    """``30m``/``1h``/``7d``/``500ms`` or a number of seconds -> seconds (the API takes seconds)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"expected a duration like 30m, 1h, 7d or seconds, got {value!r}")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {value!r}")
    return seconds


def since_timestamp(value: datetime | float | str | None) -> str | None:
    """An ISO time as given, a datetime, or a duration back from now (``24h``)."""
    if value is None or isinstance(value, datetime):
        return encode_timestamp(value)
    try:
        return encode_timestamp(datetime.fromisoformat(str(value)))
    except ValueError:
        return encode_timestamp(time.time() - duration_seconds(value))


def encode_instant(value: datetime | float | str | None) -> str | None:
    """A time for the API: a datetime, epoch seconds, or an ISO date or date-time string. Without a zone
    it is read as UTC (the API itself wants an offset); a string that is no time is sent as given, for
    the API's 422 to name."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return value
        return encode_timestamp(parsed)
    return encode_timestamp(value)


def encode_timestamp(value: datetime | float | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat()
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(float(value), UTC).isoformat()
    return str(value)


@dataclass
class MetricPoint:
    component: str
    metric_name: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)
    timestamp: str | None = None

    @classmethod
    def make(
        cls,
        component: str,
        metric_name: str,
        value: float,
        labels: Mapping[str, Any] | None = None,
        timestamp: datetime | float | str | None = None,
    ) -> MetricPoint:
        return cls(
            component=str(component),
            metric_name=str(metric_name),
            value=float(value),
            labels={str(k): str(v) for k, v in (labels or {}).items()},
            timestamp=encode_timestamp(timestamp) or datetime.now(UTC).isoformat(),
        )

    @classmethod
    def coerce(cls, point: Any) -> MetricPoint:
        """A MetricPoint from a MetricPoint, a dict or a (component, metric_name, value[, labels[, ts]])
        tuple."""
        if isinstance(point, MetricPoint):
            return point
        if isinstance(point, Mapping):
            return cls.make(
                point["component"],
                point["metric_name"],
                point["value"],
                point.get("labels"),
                point.get("timestamp"),
            )
        return cls.make(*point)

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "component": self.component,
            "metric_name": self.metric_name,
            "value": self.value,
            "labels": self.labels,
        }
        if self.timestamp is not None:
            data["timestamp"] = self.timestamp
        return data


def chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    size = max(1, size)
    for start in range(0, len(items), size):
        yield items[start : start + size]


def label_params(labels: Mapping[str, Any] | None, name: str = "labels") -> list[tuple[str, str]]:
    return [(name, f"{key}={value}") for key, value in (labels or {}).items()]


def clean_params(params: Mapping[str, Any] | list[tuple[str, Any]] | None) -> list[tuple[str, str]]:
    """Drop None values; encode datetimes, booleans and lists the way the API reads them."""
    items = params.items() if isinstance(params, Mapping) else (params or [])
    out: list[tuple[str, str]] = []
    for key, value in items:
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            out.extend((key, _param(v)) for v in value)
        else:
            out.append((key, _param(value)))
    return out


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return encode_timestamp(value) or ""
    return str(value)


def segment(value: str | int) -> str:
    """One URL path segment, escaped (component names are URL-safe, but be careful anyway)."""
    return quote(str(value), safe="")


def heartbeat_body(
    status: str | None, duration_seconds: float | None, message: str | None, rid: str | UUID | None = None
) -> dict[str, Any]:
    """The heartbeat API's JSON body; ``rid`` (a UUID, or its text) names the run it reports."""
    body: dict[str, Any] = {}
    if status is not None:
        if status not in {"start", "success", "fail"}:
            raise ValueError(f"heartbeat status must be start, success or fail, got {status!r}")
        body["status"] = status
    if duration_seconds is not None:
        body["duration_seconds"] = round(float(duration_seconds), 6)
    if message is not None:
        body["message"] = str(message)[:MAX_MESSAGE]
    if rid is not None:
        body["rid"] = str(rid)
    return body


def run_id_refused(exc: BaseException, body: dict[str, Any]) -> bool:
    """Whether the guard refused a heartbeat's ``rid`` as a field it does not know: a guard from before
    run ids (its heartbeat body forbids unknown fields). The heartbeat is then sent without it."""
    if not isinstance(exc, GuardAPIError) or exc.status != 422 or "rid" not in body:
        return False
    fields = exc.details.get("fields")
    return isinstance(fields, list) and any(
        isinstance(f, dict) and f.get("field") == "body.rid" and f.get("type") == "extra_forbidden"
        for f in fields
    )


def without_run_id(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key != "rid"}


class RunIdSupport:
    """Whether the guard takes run ids. Once it refused one (a guard from before them), heartbeats go
    without for ``retry_after`` seconds, one request each, then the guard is asked again: it may have
    been upgraded under a long-lived client."""

    def __init__(self, retry_after: float = 3600.0, clock: Callable[[], float] = time.monotonic):
        self.retry_after = retry_after
        self._clock = clock
        self._refused_at: float | None = None

    def body(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` as it goes to the guard now."""
        if self._refused_at is not None and self._clock() - self._refused_at < self.retry_after:
            return without_run_id(body)
        return body

    def refused(self) -> None:
        self._refused_at = self._clock()


def failure_message(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:MAX_MESSAGE]
