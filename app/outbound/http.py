"""Bounded outbound HTTP for probes, webhooks and notification channels: one timeout over the
whole exchange, at most N response bytes read, bounded redirects, and errors returned as a short
message instead of raised — a failing receiver is data, not an exception."""

from __future__ import annotations

import email.utils
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from app.core.deadlines import lenient_timeout
from app.outbound.ssrf import SafeResolver, SSRFPolicy, UnsafeURL, guarded_socket_factory, redact_url

DEFAULT_MAX_RESPONSE_BYTES = 65536
_MAX_ERROR_CHARS = 200
# For sessions whose requests are bounded by a timeout around them (`lenient_timeout`) instead.
NO_AIOHTTP_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=None, sock_read=None, sock_connect=None)


@dataclass(frozen=True, slots=True)
class OutboundResponse:
    status: int | None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    truncated: bool = False
    latency_s: float = 0.0
    retry_after_s: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
    Dates in the past give 0; garbage gives None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


def make_session(
    *,
    ssrf_allow: Iterable[str] | SSRFPolicy | None = None,
    verify_tls: bool = True,
    limit: int = 100,
    limit_per_host: int = 0,
    user_agent: str = "pipeline-guard",
    headers: dict[str, str] | None = None,
) -> aiohttp.ClientSession:
    """A ClientSession for outbound calls. With `ssrf_allow` not None every connection is checked
    against the SSRF policy at resolve and connect time (use [] for "no exceptions").
    Must be called with a running event loop; the caller closes it."""
    kwargs: dict[str, Any] = {"limit": limit, "limit_per_host": limit_per_host}
    if not verify_tls:
        kwargs["ssl"] = False
    if ssrf_allow is not None:
        policy = ssrf_allow if isinstance(ssrf_allow, SSRFPolicy) else SSRFPolicy.from_allow(ssrf_allow)
        resolver = SafeResolver(policy)
        kwargs["resolver"] = resolver
        kwargs["socket_factory"] = guarded_socket_factory(policy, resolver)
    connector = aiohttp.TCPConnector(**kwargs)
    # trust_env=False: an HTTP(S)_PROXY in the guard's environment must not reroute (or bypass the
    # SSRF checks of) outbound calls.
    return aiohttp.ClientSession(
        connector=connector, trust_env=False, headers={"User-Agent": user_agent, **(headers or {})}
    )


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"


def describe_error(exc: BaseException, *, url: str, timeout: float, max_redirects: int) -> str:
    """A short, secret-free message for a failed request."""
    if isinstance(exc, UnsafeURL):
        return _short(str(exc))
    if isinstance(exc, aiohttp.TooManyRedirects):
        return f"too many redirects (more than {max_redirects})"
    if isinstance(exc, TimeoutError):  # aiohttp's timeout errors subclass it too
        return f"timeout after {timeout:g}s"
    if isinstance(exc, aiohttp.InvalidURL):
        return "invalid URL"
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error = exc.os_error
        if isinstance(os_error, UnsafeURL) or "refused by SSRF policy" in str(os_error):
            return _short(str(os_error))
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            return f"cannot resolve host {exc.host!r}"
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            return _short(f"TLS certificate verification failed for {exc.host}: {exc.certificate_error}")
        if isinstance(exc, aiohttp.ClientSSLError):
            return _short(f"TLS handshake with {exc.host}:{exc.port} failed")
        # asyncio puts "Connect call failed (addr)" in strerror; the errno text says more.
        reason = (
            (os.strerror(os_error.errno) if os_error.errno else None)
            or str(os_error)
            or type(os_error).__name__
        )
        return _short(f"cannot connect to {exc.host}:{exc.port}: {reason}")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected without a response"
    if isinstance(exc, aiohttp.ClientResponseError):
        return _short(f"invalid HTTP response: {exc.message}")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "response body was cut off or malformed"
    # Exception texts may echo the URL (with credentials); only ever show its redacted form.
    message = str(exc).replace(url, redact_url(url)) or type(exc).__name__
    return _short(f"{type(exc).__name__}: {message}")


async def _read_capped(resp: aiohttp.ClientResponse, max_bytes: int) -> tuple[bytes, bool]:
    content = resp.content
    # One byte more than the cap tells us whether there was more, without reading much more.
    first = await content.read(max_bytes + 1)
    if not first or len(first) > max_bytes or content.at_eof():
        # The common case (a small body, already complete): one read, no copies.
        return (first[:max_bytes], True) if len(first) > max_bytes else (first, False)
    buf = bytearray(first)
    while len(buf) <= max_bytes:
        chunk = await content.read(max_bytes + 1 - len(buf))
        if not chunk:
            break
        buf += chunk
    truncated = len(buf) > max_bytes
    return bytes(buf[:max_bytes]), truncated


async def bounded_request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    json_body: Any = None,
    data: bytes | str | None = None,
    timeout: float,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    max_redirects: int = 3,
    verify_tls: bool = True,
    read_body: bool = True,
    collect_headers: bool = True,
) -> OutboundResponse:
    """One HTTP exchange, fully bounded. Never raises for network trouble: the returned
    OutboundResponse has `error` set instead (status None unless a response had arrived).

    Probes that only look at the status pass `read_body=False` (the body is neither decompressed
    nor kept; what has not arrived yet is still drained, up to the cap, so the connection can be
    reused) and `collect_headers=False` (no copy of the response headers, no Retry-After)."""
    if json_body is not None and data is not None:
        raise ValueError("pass either json_body or data, not both")
    started = time.monotonic()
    status: int | None = None
    resp_headers: dict[str, str] = {}
    retry_after: float | None = None
    kwargs: dict[str, Any] = {
        "allow_redirects": max_redirects > 0,
        # The asyncio.timeout below bounds the whole exchange (body read included); a second timer
        # inside aiohttp would only add per-request cost.
        "timeout": NO_AIOHTTP_TIMEOUT,
    }
    if headers:
        kwargs["headers"] = headers  # aiohttp copies them into the request's own CIMultiDict
    if max_redirects > 0:
        kwargs["max_redirects"] = max_redirects
    if json_body is not None:
        kwargs["json"] = json_body
    elif data is not None:
        kwargs["data"] = data
    if not verify_tls:
        kwargs["ssl"] = False
    if not read_body:
        kwargs["auto_decompress"] = False
    try:
        # The outer timeout also bounds the body read and anything aiohttp's timer misses; it does not
        # count the guard's own lateness (an answer that arrived while the loop could not run is read).
        async with lenient_timeout(timeout), session.request(method, url, **kwargs) as resp:
            status = resp.status
            if collect_headers:
                for key, value in resp.headers.items():
                    resp_headers[key] = f"{resp_headers[key]}, {value}" if key in resp_headers else value
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            if method.upper() == "HEAD":
                body, truncated = b"", False
            elif read_body:
                body, truncated = await _read_capped(resp, max_response_bytes)
            else:
                body, truncated = b"", False
                if not resp.content.is_eof():
                    # Not all arrived yet: drain it (capped) so the connection can be reused;
                    # a body that has fully arrived is simply dropped with the response.
                    _, truncated = await _read_capped(resp, max_response_bytes)
            if truncated:
                # Unread bytes are still on the wire: never hand this connection back to the pool.
                resp.close()
    except Exception as exc:  # noqa: BLE001 - every failure becomes `error`, by contract
        return OutboundResponse(
            status=status,
            headers=resp_headers,
            latency_s=time.monotonic() - started,
            error=describe_error(exc, url=url, timeout=timeout, max_redirects=max_redirects),
        )
    return OutboundResponse(status, resp_headers, body, truncated, time.monotonic() - started, retry_after)
