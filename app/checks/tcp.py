"""`tcp` check: connect, optionally read a banner (bounded bytes and time) and look for a substring."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from app.checks.base import (
    CheckContext,
    CheckKind,
    CheckResult,
    ConfigErrors,
    effective_timeout,
    opt_number,
    require_mapping,
    short,
)
from app.core.deadlines import lenient_timeout

DEFAULT_BANNER_MAX_BYTES = 1024
CLOSE_TIMEOUT_S = 1.0


class TcpCheck(CheckKind):
    name: ClassVar[str] = "tcp"

    def validate(self, params: Mapping[str, Any], ctx: CheckContext | None = None) -> dict[str, Any]:  # noqa: ARG002  CheckType.validate interface
        params = require_mapping(params)
        errs = ConfigErrors()
        host = params.get("host")
        if not isinstance(host, str) or not host.strip():
            errs.add("host", "is required")
        port = opt_number(errs, params, "port", minimum=1, maximum=65535, integer=True)
        if port is None:
            errs.add("port", "is required")
        banner = params.get("expect_banner")
        if banner is not None and (not isinstance(banner, str) or not banner):
            errs.add("expect_banner", "must be a non-empty string")
        out = {
            "host": host.strip() if isinstance(host, str) else host,
            "port": port,
            "expect_banner": banner,
            "banner_max_bytes": opt_number(
                errs,
                params,
                "banner_max_bytes",
                default=DEFAULT_BANNER_MAX_BYTES,
                minimum=1,
                maximum=65536,
                integer=True,
            ),
            "timeout": opt_number(errs, params, "timeout", minimum=0.01, maximum=300),
            "degraded_after_ms": opt_number(errs, params, "degraded_after_ms", minimum=1),
        }
        errs.raise_if_any()
        return out

    async def probe(self, params: dict[str, Any], ctx: CheckContext) -> CheckResult:
        timeout = effective_timeout(params, ctx)
        host, port = params["host"], params["port"]
        target = f"{host}:{port}"
        started = time.monotonic()
        deadline = started + timeout
        try:
            async with lenient_timeout(timeout):
                reader, writer = await asyncio.open_connection(host, port)
        except TimeoutError:
            return CheckResult.down(f"connect to {target}: timeout after {timeout:g}s", timeout)
        except ConnectionRefusedError:
            return CheckResult.down(f"connect to {target}: connection refused", time.monotonic() - started)
        except socket.gaierror:
            return CheckResult.down(f"cannot resolve host {host!r}", time.monotonic() - started)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            return CheckResult.down(f"connect to {target}: {reason}", time.monotonic() - started)
        connect_latency = time.monotonic() - started
        try:
            if params.get("expect_banner"):
                failure = await self._read_banner(reader, params, deadline)
                if failure:
                    return CheckResult.down(f"{target}: {failure}", time.monotonic() - started)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await writer.wait_closed()
        limit_ms = params.get("degraded_after_ms")
        if limit_ms is not None and connect_latency * 1000 > limit_ms:
            return CheckResult.degraded(
                f"connected to {target} but slow: {connect_latency * 1000:.0f} ms > {limit_ms:g} ms",
                connect_latency,
            )
        what = "banner matched" if params.get("expect_banner") else "connected"
        return CheckResult.up(f"{target}: {what} in {connect_latency * 1000:.0f} ms", connect_latency)

    @staticmethod
    async def _read_banner(
        reader: asyncio.StreamReader, params: dict[str, Any], deadline: float
    ) -> str | None:
        expected = params["expect_banner"].encode()
        limit = params["banner_max_bytes"]
        data = bytearray()
        try:
            async with lenient_timeout(max(0.0, deadline - time.monotonic())):
                while expected not in data and len(data) < limit:
                    chunk = await reader.read(limit - len(data))
                    if not chunk:
                        break
                    data += chunk
        except TimeoutError:
            pass
        except OSError as exc:
            return f"error while reading banner: {exc.strerror or type(exc).__name__}"
        if expected in data:
            return None
        seen = data.decode("utf-8", errors="replace")
        seen = "".join(c if c.isprintable() else " " for c in seen)
        return f"banner does not contain {short(params['expect_banner'], 40)!r} (got {short(seen, 60)!r})"
