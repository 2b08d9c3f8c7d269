"""``webhook``: one bounded, SSRF-checked HTTP call (CI/CD, Airflow, Argo, any "rerun the stage" API).

Parameters: ``url``, ``method`` (POST), ``headers`` (a list of ``{name, value, secret}``; secret values,
and those of credential headers such as ``Authorization``, are stored encrypted and decrypted only to
send), ``body`` (a JSON template: string values may use ``{component}``, ``{incident_id}``,
``{status}``, ``{reason}``, ``{attempt}`` — plain substitution, no expressions), ``timeout`` (10 s),
``verify_tls``. A 2xx answer is success. The URL's credentials (password, credential-named query
parameters) and the values of credential-named body fields (``token``, ``password``, ``api_key``...,
at any depth) are kept encrypted beside a masked copy (``app.security.recovery_secrets``).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar
from urllib.parse import urlsplit

from app.core import http_headers
from app.healing.secretbox import HealingSecrets, SecretBoxError
from app.healing.strategies.base import ActionContext, ActionResult, Strategy, StrategyConfigError
from app.outbound.http import bounded_request, make_session
from app.outbound.ssrf import UnsafeURL, check_url, redact_url
from app.security.check_secrets import ALWAYS_SECRET_HEADERS, display_url
from app.security.recovery_secrets import masked_body, masked_text, webhook_secret_values

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}
PLACEHOLDERS = ("component", "incident_id", "status", "reason", "attempt")
MAX_BODY_BYTES = 65536
MAX_RESPONSE_BYTES = 4096
_ALLOWED = {"url", "method", "headers", "body", "timeout", "verify_tls"}
_FORBIDDEN_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


def render(template: Any, fields: dict[str, str]) -> Any:
    """Substitute ``{name}`` placeholders in every string of a JSON document; nothing else."""
    if isinstance(template, str):
        for name in PLACEHOLDERS:
            template = template.replace("{" + name + "}", fields.get(name, ""))
        return template
    if isinstance(template, list):
        return [render(v, fields) for v in template]
    if isinstance(template, dict):
        return {k: render(v, fields) for k, v in template.items()}
    return template


class WebhookStrategy(Strategy):
    kind: ClassVar[str] = "webhook"

    def __init__(self, settings: Any = None, secrets: HealingSecrets | None = None) -> None:
        self.secrets = secrets or HealingSecrets(None)
        security = getattr(settings, "security", None)
        self.ssrf_allow = list(getattr(security, "ssrf_allowlist", []) or [])

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(params, dict):
            raise StrategyConfigError("params", "must be a mapping")
        unknown = sorted(set(params) - _ALLOWED)
        if unknown:
            raise StrategyConfigError(unknown[0], "unknown parameter")
        url = params.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise StrategyConfigError("url", "must be an http:// or https:// URL")
        try:
            check_url(url, self.ssrf_allow)
        except UnsafeURL as exc:
            # A name that does not resolve today may tomorrow; the connection is checked again at
            # execution time (resolver + socket factory), so only refuse what is unsafe now.
            if not str(exc).startswith("cannot resolve host"):
                raise StrategyConfigError("url", str(exc)) from None
        method = str(params.get("method", "POST")).upper()
        if method not in METHODS:
            raise StrategyConfigError("method", f"must be one of {', '.join(sorted(METHODS))}")
        headers = self._validate_headers(params.get("headers") or [])
        if urlsplit(url).username is not None and any(h["name"].lower() == "authorization" for h in headers):
            # aiohttp refuses to send both: every heal would fail.
            raise StrategyConfigError(
                "headers", "Authorization cannot be combined with credentials in the URL"
            )
        body = params.get("body")
        if body is not None:
            try:
                encoded = json.dumps(body)
            except (TypeError, ValueError):
                raise StrategyConfigError("body", "must be JSON") from None
            if len(encoded) > MAX_BODY_BYTES:
                raise StrategyConfigError("body", f"must be at most {MAX_BODY_BYTES} bytes")
        timeout = params.get("timeout", 10.0)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 120:
            raise StrategyConfigError("timeout", "must be a number of seconds in (0, 120]")
        verify_tls = params.get("verify_tls", True)
        if not isinstance(verify_tls, bool):
            raise StrategyConfigError("verify_tls", "must be true or false")
        shown = {
            "url": display_url(url),
            "method": method,
            "headers": headers,
            "body": masked_body(body),
            "timeout": float(timeout),
            "verify_tls": verify_tls,
        }
        secret: dict[str, Any] = {}
        if shown["url"] != url:
            secret["url"] = url
        if shown["body"] != body:
            secret["body"] = body
        return self.secrets.sealed(shown, secret)

    def _validate_headers(self, headers: Any) -> list[dict[str, Any]]:
        if isinstance(headers, dict):  # {name: value} shorthand: never secret
            headers = [{"name": k, "value": v} for k, v in headers.items()]
        if not isinstance(headers, list):
            raise StrategyConfigError("headers", "must be a list of {name, value, secret} objects")
        out = []
        for i, header in enumerate(headers):
            where = f"headers[{i}]"
            if not isinstance(header, dict) or not isinstance(header.get("name"), str) or not header["name"]:
                raise StrategyConfigError(where, "must be an object with a 'name'")
            name = header["name"]
            if name.lower() in _FORBIDDEN_HEADERS or not http_headers.valid_name(name):
                raise StrategyConfigError(where, f"header {name!r} is not allowed")
            secret = bool(header.get("secret", False)) or name.lower() in ALWAYS_SECRET_HEADERS
            if "value_encrypted" in header and "value" not in header:
                if not secret or not isinstance(header["value_encrypted"], str):
                    raise StrategyConfigError(where, "value_encrypted requires secret: true")
                out.append({"name": name, "secret": True, "value_encrypted": header["value_encrypted"]})
                continue
            value = header.get("value")
            if not http_headers.valid_value(value):
                raise StrategyConfigError(
                    where, "value must be a single-line string without control characters"
                )
            if secret and not self.secrets.available:  # validation only (nothing is stored)
                out.append({"name": name, "secret": True, "value": value})
            elif secret:
                try:
                    out.append({"name": name, "secret": True, "value_encrypted": self.secrets.encrypt(value)})
                except SecretBoxError as exc:
                    raise StrategyConfigError(where, str(exc)) from None
            else:
                out.append({"name": name, "value": value})
        return out

    def describe(self, params: dict[str, Any]) -> str:
        return f"{params['method']} {redact_url(params['url'])}"

    async def execute(self, ctx: ActionContext) -> ActionResult:
        try:
            p = self.secrets.revealed(ctx.params)
            headers = {
                h["name"]: self.secrets.decrypt(h["value_encrypted"])
                if "value_encrypted" in h
                else h["value"]
                for h in p["headers"]
            }
        except SecretBoxError as exc:
            return ActionResult(False, f"webhook parameters unusable: {exc}")
        incident = p.get("_incident") or {}
        fields = {
            "component": ctx.component,
            "incident_id": str(ctx.incident_id),
            "attempt": str(ctx.attempt_number),
            "status": str(incident.get("status", "")),
            "reason": str(incident.get("reason", "")),
        }
        body = render(p["body"], fields) if p.get("body") is not None else None
        timeout = min(p["timeout"], ctx.timeout_s)
        async with make_session(ssrf_allow=self.ssrf_allow, verify_tls=p["verify_tls"]) as session:
            response = await bounded_request(
                session,
                p["method"],
                p["url"],
                headers=headers,
                json_body=body,
                timeout=timeout,
                max_response_bytes=MAX_RESPONSE_BYTES,
                verify_tls=p["verify_tls"],
            )
        where = f"{p['method']} {redact_url(p['url'])}"
        # The answer is shown to every role: a receiver that echoes the request must not leak its credentials.
        output = masked_text(
            response.body.decode("utf-8", "replace"),
            webhook_secret_values(p["headers"], headers, p["url"], p.get("body")),
        )
        if response.error:
            return ActionResult(
                False, f"{where} failed: {response.error}", output, {"status": response.status}
            )
        return ActionResult(
            response.ok, f"{where} answered {response.status}", output, {"status": response.status}
        )
