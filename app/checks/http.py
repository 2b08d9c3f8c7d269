"""`http` check: one bounded request; outcome from status, optional body condition, latency."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from app.checks.base import (
    CheckContext,
    CheckKind,
    CheckResult,
    ConfigErrors,
    Outcome,
    opt_number,
    require_mapping,
    short,
)
from app.core import http_headers
from app.outbound.http import bounded_request, make_session
from app.outbound.ssrf import redact_url

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
DEFAULT_EXPECTED_STATUS = [[200, 399]]
# Header names treated as secret even when not listed in `secret_headers`.
ALWAYS_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})
_RANGE_RE = re.compile(r"^\s*(\d{3})\s*-\s*(\d{3})\s*$")
_MISSING = object()


def _parse_status(errs: ConfigErrors, raw: Any) -> list[list[int]]:
    if raw is None:
        return [list(r) for r in DEFAULT_EXPECTED_STATUS]
    items = raw if isinstance(raw, list) else [raw]
    ranges: list[list[int]] = []
    for i, item in enumerate(items):
        lo = hi = None
        if isinstance(item, int) and not isinstance(item, bool):
            lo = hi = item
        elif isinstance(item, str) and item.strip().isdigit():
            lo = hi = int(item)
        elif isinstance(item, str) and (m := _RANGE_RE.match(item)):
            lo, hi = int(m[1]), int(m[2])
        elif (
            isinstance(item, list | tuple)
            and len(item) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in item)
        ):
            lo, hi = item  # the normalised form: validate() must accept its own output
        if lo is None or hi is None or not (100 <= lo <= hi <= 599):
            errs.add(f"expected_status[{i}]", 'must be a status code or a range like "200-399"')
            continue
        ranges.append([lo, hi])
    if not items:
        errs.add("expected_status", "must not be empty")
    return ranges


def _format_status(ranges: list[list[int]]) -> str:
    return ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)


def json_path_get(document: Any, path: str) -> Any:
    """Follow a dotted path (`a.b.0.c`; digits index lists). Returns _MISSING when absent."""
    node = document
    for part in path.split("."):
        if isinstance(node, list) and part.lstrip("-").isdigit():
            index = int(part)
            if not -len(node) <= index < len(node):
                return _MISSING
            node = node[index]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return _MISSING
    return node


def _as_text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, bool | type(None)) else str(value)


def _matches(value: Any, expected: Any) -> bool:
    """Equality, where a string `expected` also matches the JSON text of a scalar (so YAML's
    "true" or "3" work), and True never equals 1."""
    if isinstance(value, bool) == isinstance(expected, bool) and value == expected:
        return True
    return isinstance(expected, str) and not isinstance(value, str) and _as_text(value) == expected


class HttpCheck(CheckKind):
    name: ClassVar[str] = "http"
    self_bounded: ClassVar[bool] = True  # bounded_request: one timeout over the whole exchange

    def validate(self, params: Mapping[str, Any], ctx: CheckContext | None = None) -> dict[str, Any]:  # noqa: ARG002  CheckType.validate interface
        params = require_mapping(params)
        errs = ConfigErrors()
        out: dict[str, Any] = {}

        url = params.get("url")
        url_has_credentials = False
        if not isinstance(url, str) or not url:
            errs.add("url", "is required")
        else:
            try:
                parts = urlsplit(url)
                parts.port  # noqa: B018 - raises ValueError on a bad port
            except ValueError:
                errs.add("url", "is not a valid URL")
            else:
                if parts.scheme.lower() not in ("http", "https"):
                    errs.add("url", "must be http or https")
                elif not parts.hostname:
                    errs.add("url", "has no host")
                url_has_credentials = parts.username is not None or parts.password is not None
        out["url"] = url

        method = params.get("method", "GET")
        if not isinstance(method, str) or method.upper() not in METHODS:
            errs.add("method", f"must be one of {', '.join(sorted(METHODS))}")
        out["method"] = method.upper() if isinstance(method, str) else "GET"

        headers = params.get("headers") or {}
        if not isinstance(headers, Mapping):
            errs.add("headers", "must be an object of header name to value")
            headers = {}
        clean_headers: dict[str, str] = {}
        for key, value in headers.items():
            if not http_headers.valid_name(key):
                errs.add("headers", f"invalid header name {key!r} (letters, digits and !#$%&'*+-.^_`|~)")
            elif not http_headers.valid_value(value):
                # Never echo the value: it may be a secret.
                errs.add(f"headers.{key}", "must be a string without line breaks or control characters")
            elif url_has_credentials and key.lower() == "authorization":
                # aiohttp refuses to send both: every probe would fail.
                errs.add(f"headers.{key}", "cannot be combined with credentials in the URL (user:password@)")
            else:
                clean_headers[key] = value
        out["headers"] = clean_headers

        secret = params.get("secret_headers") or []
        if not isinstance(secret, list | tuple | set) or not all(isinstance(h, str) for h in secret):
            errs.add("secret_headers", "must be a list of header names")
            secret = []
        out["secret_headers"] = sorted({h.lower() for h in secret})

        out["expected_status"] = _parse_status(errs, params.get("expected_status"))

        body_contains = params.get("body_contains")
        if body_contains is not None and (not isinstance(body_contains, str) or not body_contains):
            errs.add("body_contains", "must be a non-empty string")
        out["body_contains"] = body_contains

        json_path = params.get("json_path")
        if json_path is not None:
            if not isinstance(json_path, str) or not json_path or "" in json_path.split("."):
                errs.add("json_path", 'must be a dotted path like "data.items.0.status"')
            if "json_expected" not in params:
                errs.add("json_expected", "is required with json_path")
        elif params.get("json_expected") is not None:
            errs.add("json_path", "is required with json_expected")
        out["json_path"] = json_path
        out["json_expected"] = params.get("json_expected")
        if out["method"] == "HEAD" and (body_contains is not None or json_path is not None):
            errs.add("method", "HEAD has no body; body_contains/json_path need GET or POST")

        body = params.get("body")
        if body is not None and not isinstance(body, str | dict | list):
            errs.add("body", "must be a string or a JSON object/array")
        out["body"] = body

        out["degraded_after_ms"] = opt_number(errs, params, "degraded_after_ms", minimum=1)
        verify = params.get("verify_tls", True)
        if not isinstance(verify, bool):
            errs.add("verify_tls", "must be true or false")
        out["verify_tls"] = verify if isinstance(verify, bool) else True
        out["max_redirects"] = opt_number(
            errs, params, "max_redirects", default=3, minimum=0, maximum=10, integer=True
        )
        out["max_body_kib"] = opt_number(
            errs, params, "max_body_kib", default=64, minimum=1, maximum=1024, integer=True
        )
        out["timeout"] = opt_number(errs, params, "timeout", minimum=0.01, maximum=300)
        errs.raise_if_any()
        return out

    def redact(self, params: Mapping[str, Any]) -> dict[str, Any]:
        shown = dict(params)
        secret = {h.lower() for h in params.get("secret_headers") or []} | ALWAYS_SECRET_HEADERS
        if isinstance(params.get("headers"), Mapping):
            shown["headers"] = {
                k: ("***" if str(k).lower() in secret else v) for k, v in params["headers"].items()
            }
        if isinstance(params.get("url"), str):
            shown["url"] = redact_url(params["url"])
        return shown

    async def probe(self, params: dict[str, Any], ctx: CheckContext) -> CheckResult:
        # Hot path (every probe of every http component): no per-probe dict merging, the body is
        # only read (and decompressed) when a body condition needs it, response headers are not
        # copied, and the usual results are built without re-normalising their detail text.
        own = params.get("timeout")
        timeout = min(float(own), ctx.timeout) if own else ctx.timeout
        body = params.get("body")
        body_contains = params.get("body_contains")
        json_path = params.get("json_path")
        data = json_body = None
        if isinstance(body, str):
            data = body.encode()
        elif body is not None:
            json_body = body

        session = ctx.http_session
        own_session = session is None
        if session is None:
            session = make_session(verify_tls=params["verify_tls"], limit=1)
        try:
            resp = await bounded_request(
                session,
                params["method"],
                params["url"],
                headers=params["headers"],
                data=data,
                json_body=json_body,
                timeout=timeout,
                max_response_bytes=params["max_body_kib"] * 1024,
                max_redirects=params["max_redirects"],
                verify_tls=params["verify_tls"],
                read_body=body_contains is not None or json_path is not None,
                collect_headers=False,
            )
        finally:
            if own_session:
                await session.close()
        latency = resp.latency_s
        status = resp.status

        if status is None:  # no response arrived: bounded_request says why
            return CheckResult.down(resp.error or "no response", latency)
        if resp.error is not None:
            return CheckResult.down(f"HTTP {status}, then {resp.error}", latency)
        metrics = {"status_code": float(status)}
        ranges = params["expected_status"]
        for lo, hi in ranges:
            if lo <= status <= hi:
                break
        else:
            return CheckResult.down(
                f"HTTP {status} (expected {_format_status(ranges)})", latency, metrics=metrics
            )
        if body_contains is not None or json_path is not None:
            cap_note = f" (only the first {params['max_body_kib']} KiB read)" if resp.truncated else ""
            if body_contains is not None:
                text = resp.body.decode("utf-8", errors="replace")
                if body_contains not in text:
                    return CheckResult.down(
                        f"HTTP {status}, body does not contain the expected text{cap_note}",
                        latency,
                        metrics=metrics,
                    )
            if json_path is not None:
                failure = self._check_json(resp.body, resp.truncated, params)
                if failure:
                    return CheckResult.down(f"HTTP {status}, {failure}", latency, metrics=metrics)
        limit_ms = params.get("degraded_after_ms")
        if limit_ms is not None and latency * 1000 > limit_ms:
            return CheckResult(
                Outcome.DEGRADED,
                latency,
                f"HTTP {status} but slow: {latency * 1000:.0f} ms > {limit_ms:g} ms",
                metrics=metrics,
            )
        # A one-line detail well under DETAIL_MAX_CHARS: no need for short().
        return CheckResult(Outcome.UP, latency, f"HTTP {status} in {latency * 1000:.0f} ms", metrics=metrics)

    @staticmethod
    def _check_json(body: bytes, truncated: bool, params: dict[str, Any]) -> str | None:
        path = params["json_path"]
        if truncated:
            return f"body larger than {params['max_body_kib']} KiB, cannot evaluate json_path {path}"
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return "body is not valid JSON"
        value = json_path_get(document, path)
        if value is _MISSING:
            return f"json_path {path}: not found"
        expected = params["json_expected"]
        if not _matches(value, expected):
            return (
                f"json_path {path}: got {short(json.dumps(value), 60)}, expected "
                f"{short(json.dumps(expected), 60)}"
            )
        return None
