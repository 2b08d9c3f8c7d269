"""The guard's HTTP edge: everything every request goes through before routing, in one pass.

Request id, HTTP metrics, NUL and body-size guards and the per-IP rate limit used to be five
middlewares, each with its own call frame, header scan and ``send`` wrapper; on a request as small
as GET /health those layers cost as much as the route. Here the headers are read once, one ``send``
wrapper records the status and size for the metrics and adds X-Request-ID, and the receive channel
is wrapped only when a body can exceed its declared length. The order of the checks is the order of
the old layers: NUL (400), then declared size (413), then rate limit (429); each refusal is still
timed, counted and carries its request id. Every route, /health included, is rate limited.

A ``shortcut`` (the liveness answer of a plain GET /health) is served here once every check has
passed, without the route table: it is timed, counted under its route template and carries its
request id like any routed request.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.error_handlers import has_nul, send_error
from app.api.ratelimit import RateLimiter, client_key, route_group, send_rate_limited
from app.observability.http_metrics import HttpMetricsRecorder

MAX_REQUEST_ID_CHARS = 64


class Shortcut(Protocol):
    """An answer for one path that needs no routing (e.g. app.health.liveness.LivenessShortcut)."""

    handler: str  # the route template its requests are counted under

    def accepts(self, scope: Scope) -> bool: ...

    async def answer(self, send: Send) -> None: ...


def _request_ids() -> Iterator[str]:
    """Unique per process and unguessable across processes: a random prefix and a counter
    (uuid4 per request cost 4.5 % of a /health request)."""
    prefix = secrets.token_hex(8)
    for n in itertools.count():
        yield f"{prefix}{n:016x}"


new_request_id = _request_ids().__next__


def _sane_request_id(value: bytes) -> str | None:
    """An incoming X-Request-ID is kept when it is short printable ASCII (it lands in logs)."""
    if not 0 < len(value) <= MAX_REQUEST_ID_CHARS:
        return None
    text = value.decode("latin-1")
    return text if text.isascii() and text.isprintable() else None


class EdgeMiddleware:
    """Outermost of the guard's own middlewares (inside Starlette's ServerErrorMiddleware)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: HttpMetricsRecorder,
        limiter_getter: Callable[[], RateLimiter | None],
        on_reject: Callable[[str], None] | None = None,
        max_body_bytes: int,
        shortcuts: dict[str, Shortcut] | None = None,
    ):
        self.app = app
        self.shortcuts = shortcuts or {}
        self.metrics = metrics
        self.limiter_getter = limiter_getter
        self.on_reject = on_reject
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = declared = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == b"x-request-id":
                request_id = _sane_request_id(value)
            elif name == b"transfer-encoding":
                chunked = True
        if request_id is None:
            request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode())
        response = _Response()

        async def edge_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                response.status = message["status"]
                response.started = True
                headers = list(message.get("headers", ()))
                for name, value in headers:
                    if name == b"content-length":
                        response.size = int(value)
                        break
                headers.append(id_header)
                message["headers"] = headers
            await send(message)

        try:
            await self._handle(scope, receive, edge_send, declared, chunked, response)
        finally:
            in_size = int(declared) if declared is not None and declared.isdigit() else 0
            self.metrics.record(
                scope, response.status, time.perf_counter() - start, in_size, response.size, response.handler
            )

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        declared: bytes | None,
        chunked: bool,
        response: _Response,
    ) -> None:
        if has_nul(scope):
            await send_error(
                send, 400, "bad_request", "NUL characters are not allowed in the path or query string"
            )
            return
        if declared is not None:
            try:
                too_big = int(declared) > self.max_body_bytes
            except ValueError:
                too_big = False
            if too_big:
                await self._too_large(send)
                return
        limiter = self.limiter_getter()
        if limiter is not None and limiter.enabled and (group := route_group(scope["path"])) is not None:
            wait = await limiter.check(group, client_key(scope, limiter.proxies))
            if wait is not None:
                if self.on_reject is not None:
                    self.on_reject(group)
                await send_rate_limited(send, limiter, group, wait)
                return
        shortcut = self.shortcuts.get(scope["path"])
        if shortcut is not None and shortcut.accepts(scope):
            response.handler = shortcut.handler
            await shortcut.answer(send)
            return
        if not chunked and scope.get("http_version") in ("1.0", "1.1"):
            # HTTP/1 framing: the server delivers exactly the declared length (checked above), or no
            # body at all when none is declared.
            await self.app(scope, receive, send)
            return
        await self._with_counted_body(scope, receive, send, response)

    async def _with_counted_body(
        self, scope: Scope, receive: Receive, send: Send, response: _Response
    ) -> None:
        """Count the bytes of a body of unknown length; refuse with 413 once they pass the cap. The
        route's body parser turns any error of the receive channel into a 400 of its own: that answer
        is replaced by the 413."""
        received = 0
        overflow = False

        async def counted_receive() -> Message:
            nonlocal received, overflow
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    overflow = True
                    raise _TooLarge
            return message

        async def checked_send(message: Message) -> None:
            if not overflow:
                await send(message)
            elif message["type"] == "http.response.start":
                await self._too_large(send)

        try:
            await self.app(scope, counted_receive, checked_send)
        except _TooLarge:
            if not response.started:
                await self._too_large(send)

    async def _too_large(self, send: Send) -> None:
        await send_error(
            send,
            413,
            "payload_too_large",
            f"request body exceeds {self.max_body_bytes} bytes",
            {"max_bytes": self.max_body_bytes},
        )


class _Response:
    """What the metrics record of a response: status, declared size, whether it started, and the
    route template of a shortcut (routed requests carry theirs in the scope)."""

    __slots__ = ("handler", "size", "started", "status")

    def __init__(self) -> None:
        self.status = 500
        self.size = 0
        self.started = False
        self.handler: str | None = None


class _TooLarge(Exception):
    pass
