"""Credentials in recovery policies: write-only for every role, like those of checks and channels.

A ``webhook`` strategy may carry secrets in header values and in its URL (the userinfo password,
query parameters named like credentials). Headers marked ``secret: true`` were already stored
encrypted by the strategy; :func:`seal_recovery` also marks those named ``Authorization``, ``Cookie``,
``X-Api-Key`` and ``Proxy-Authorization`` (the names a check always treats as credentials), so a
plain ``{"Authorization": "Bearer ..."}`` is no longer stored in clear. :func:`shown_recovery` masks
every secret header and the URL's credentials in responses (never the ciphertext either).

Sending the mask back (a client that PATCHes what it read) keeps the stored value of the strategy at
the same position, but only while its URL keeps its scheme, host and port: a changed target must be
given its credentials again. URL credentials stay readable at rest (the strategy calls that URL).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from app.core.errors import ValidationFailed
from app.security.check_secrets import (
    ALWAYS_SECRET_HEADERS,
    display_url,
    is_secret_query_name,
    restore_url,
    same_origin,
)
from app.security.crypto import MASK

WEBHOOK = "webhook"
INVALID = "invalid recovery policy"


def _webhook_params(entry: Any) -> dict[str, Any] | None:
    """The parameters of a webhook strategy entry, nested (``params``) or flat; None for others."""
    if not isinstance(entry, Mapping) or entry.get("kind") != WEBHOOK:
        return None
    if isinstance(entry.get("params"), Mapping):
        return dict(entry["params"])
    return {k: v for k, v in entry.items() if k not in ("kind", "action_timeout")}


def _with_params(entry: Mapping[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    shaped = {"kind": entry["kind"], "params": params}
    if "action_timeout" in entry:
        shaped["action_timeout"] = entry["action_timeout"]
    return shaped


def _is_secret(header: Mapping[str, Any]) -> bool:
    return bool(header.get("secret")) or str(header.get("name", "")).lower() in ALWAYS_SECRET_HEADERS


def _stored_header(previous: Mapping[str, Any] | None, name: str) -> dict[str, Any] | None:
    """The stored form of header ``name`` of the previous strategy, to keep under a mask."""
    for header in (previous or {}).get("headers") or []:
        if not isinstance(header, Mapping) or str(header.get("name", "")).lower() != name.lower():
            continue
        if isinstance(header.get("value_encrypted"), str):
            return {"name": name, "secret": True, "value_encrypted": header["value_encrypted"]}
        if isinstance(header.get("value"), str) and header["value"] != MASK:
            return {"name": name, "secret": True, "value": header["value"]}
    return None


def _sealed_headers(headers: Any, previous: Mapping[str, Any] | None, keeps_target: bool, where: str) -> Any:
    if isinstance(headers, Mapping):  # the {name: value} shorthand
        headers = [{"name": k, "value": v} for k, v in headers.items()]
    if not isinstance(headers, list):
        return headers  # the strategy's own validation names the problem
    sealed: list[Any] = []
    for j, header in enumerate(headers):
        if not isinstance(header, Mapping) or not isinstance(header.get("name"), str):
            sealed.append(header)
            continue
        header = dict(header)
        if header["name"].lower() in ALWAYS_SECRET_HEADERS:
            header["secret"] = True
        if header.get("value") == MASK:
            kept = _stored_header(previous, header["name"]) if keeps_target else None
            if kept is None:
                raise ValidationFailed(
                    INVALID,
                    details={
                        "problems": [
                            f"{where}.headers[{j}]: {MASK} stands for a stored secret, and only while the "
                            "URL keeps its scheme, host and port; send the real value"
                        ]
                    },
                )
            header = kept
        sealed.append(header)
    return sealed


def seal_recovery(recovery: Any, previous: Mapping[str, Any] | None) -> Any:
    """``recovery`` as the client sent it, ready for validation: credential headers of webhook
    strategies marked secret (the strategy encrypts them), masks replaced by the stored values of
    ``previous`` (the stored, normalised policy; None on create)."""
    if not isinstance(recovery, Mapping) or not isinstance(recovery.get("strategies"), list):
        return recovery
    before = (previous or {}).get("strategies") or []
    strategies: list[Any] = []
    for i, entry in enumerate(recovery["strategies"]):
        params = _webhook_params(entry)
        if params is None:
            strategies.append(entry)
            continue
        where = f"recovery.strategies[{i}]"
        old = _webhook_params(before[i]) if i < len(before) else None
        old_url = old.get("url") if old else None
        url = params.get("url")
        if isinstance(url, str):
            params["url"] = url = restore_url(
                url, old_url if isinstance(old_url, str) else None, f"{where}.url", INVALID
            )
        keeps_target = isinstance(url, str) and isinstance(old_url, str) and same_origin(url, old_url)
        if "headers" in params:
            params["headers"] = _sealed_headers(params["headers"], old, keeps_target, where)
        strategies.append(_with_params(entry, params))
    return {**recovery, "strategies": strategies}


def shown_recovery(recovery: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A stored recovery policy for a response: no secret header value, no ciphertext, no URL
    credential, for every role."""
    if recovery is None:
        return None
    shown = dict(recovery)
    if not isinstance(recovery.get("strategies"), list):
        return shown
    strategies: list[Any] = []
    for entry in recovery["strategies"]:
        params = _webhook_params(entry)
        if params is None:
            strategies.append(entry)
            continue
        if isinstance(params.get("url"), str):
            params["url"] = display_url(params["url"])
        if isinstance(params.get("headers"), list):
            params["headers"] = [
                {"name": h.get("name"), "value": MASK, "secret": True}
                if isinstance(h, Mapping) and _is_secret(h)
                else h
                for h in params["headers"]
            ]
        strategies.append(_with_params(entry, params))
    shown["strategies"] = strategies
    return shown


def webhook_secret_values(headers: list[Mapping[str, Any]], sent: Mapping[str, str], url: str) -> list[str]:
    """The credentials a webhook strategy sends, in clear: the values of its secret (or
    credential-named) headers and their tokens, the URL's password and its credential query values.
    What the receiver answers is shown to every role, so these are masked out of it first."""
    found: set[str] = set()
    for header in headers:
        name = str(header.get("name", ""))
        if _is_secret(header) and name in sent:
            value = sent[name]
            found.add(value)
            found.update(value.split())  # "Bearer <token>": the token alone, echoed reformatted
    try:
        parts = urlsplit(url)
        if parts.password:
            found.add(parts.password)
        found.update(v for k, v in parse_qsl(parts.query, keep_blank_values=True) if is_secret_query_name(k))
    except ValueError:
        pass
    return sorted((v for v in found if len(v) >= 4), key=len, reverse=True)


def masked_text(text: str, secrets: list[str]) -> str:
    """``text`` with each of ``secrets`` (longest first) replaced by the mask."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _opened(value: Any, box: Any) -> Any:
    """``value`` with every encrypted header value replaced by its plaintext (for comparison only)."""
    if isinstance(value, Mapping):
        if isinstance(value.get("value_encrypted"), str):
            try:
                plain = box.decrypt(value["value_encrypted"])
            except Exception:  # noqa: BLE001 - unreadable: never equal to anything
                return object()
            rest = {k: _opened(v, box) for k, v in value.items() if k != "value_encrypted"}
            return {**rest, "value": plain}
        return {k: _opened(v, box) for k, v in value.items()}
    if isinstance(value, list):
        return [_opened(v, box) for v in value]
    return value


def same_recovery(stored: Any, wanted: Any, box: Any) -> bool:
    """Whether two normalised recovery policies say the same once their encrypted values are read:
    encrypting a secret gives a new ciphertext every time, so a declared policy with a secret header
    would otherwise count as changed (and bump its component's version) on every start."""
    if stored == wanted:
        return True
    if box is None:
        return False
    return _opened(stored, box) == _opened(wanted, box)
