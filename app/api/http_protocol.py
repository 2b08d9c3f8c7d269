"""uvicorn's HTTP protocol with deadlines on what a client sends.

uvicorn closes a keep-alive connection that stays idle after a response, but it waits for ever for
the rest of a request's head or body. A client that opens connections and sends a request line and
one header, or a ``Content-Length`` and a few bytes, then nothing (slowloris), holds each
connection and its file descriptor for as long as it likes: enough of them and the guard runs out
of descriptors for its own probes, database files and notifications. So each request's head must
arrive within ``security.request_header_timeout`` of its first byte (of the connection, for the
first request), and its body within ``security.request_body_timeout`` of the head's end; past
either, the client gets a 408 and the connection is closed. A deadline, not an idle timer: a
trickle of one byte every few seconds would reset an idle timer for ever.

A request's head is also bounded in size (``MAX_HEAD_BYTES``, 64 KiB, like the large header buffers
of common proxies): httptools gathers a header's value in memory until it ends, so one client
streaming a header of a few hundred megabytes grew the process by as much, and stalled the event
loop for seconds while the parser concatenated it. Past the bound: 431 and the connection closes.

`pipeline-guard serve` runs uvicorn with ``deadline_protocol(settings.security)``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    from app.config.sections import SecuritySection

MAX_HEAD_BYTES = 64 * 1024

_TOO_LARGE_431 = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 28\r\nconnection: close\r\n\r\nrequest head is too large.\r\n"
)
_TIMEOUT_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 24\r\nconnection: close\r\n\r\nrequest took too long.\r\n"
)


class DeadlineHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` whose requests must arrive, head and body, within their deadlines."""

    header_timeout: float = 10.0
    body_timeout: float = 60.0

    _head_timer: asyncio.TimerHandle | None = None
    _body_timer: asyncio.TimerHandle | None = None
    _in_head = True  # between a request's first byte (or the connection's start) and its head's end
    _head_bytes = 0  # bytes fed while the head was still incomplete afterwards

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self.header_timeout, self._too_slow)

    def data_received(self, data: bytes) -> None:
        if self._in_head and self._head_bytes > MAX_HEAD_BYTES:
            self._refuse(_TOO_LARGE_431)
            return
        super().data_received(data)
        if self._in_head:
            # Every byte of a chunk that left the head incomplete belongs to the head (but for the
            # tail of a previous request's body in the same chunk: a pipelining client's loss).
            self._head_bytes += len(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes = True, 0
        if self._head_timer is None:  # the next request on a kept-alive connection
            self._head_timer = self.loop.call_later(self.header_timeout, self._too_slow)

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()
        self._body_timer = self.loop.call_later(self.body_timeout, self._too_slow)

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None

    def _too_slow(self) -> None:
        self._refuse(_TIMEOUT_408)

    def _refuse(self, response: bytes) -> None:
        self._cancel_timers()
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(response)
        if cycle is not None and not cycle.response_complete:
            # The application waiting for the rest of the body hears a disconnect; what it would
            # still send is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()


def deadline_protocol(security: SecuritySection) -> type[DeadlineHttpToolsProtocol]:
    """The protocol class for uvicorn's ``http=``, with this configuration's deadlines."""
    return type(
        "GuardHttpProtocol",
        (DeadlineHttpToolsProtocol,),
        {
            "header_timeout": security.request_header_timeout,
            "body_timeout": security.request_body_timeout,
        },
    )
