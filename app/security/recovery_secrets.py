"""Credentials in recovery policies: write-only for every role, encrypted at rest, like those of
checks and channels.

What counts as a secret:

- ``webhook`` strategy: header values marked ``secret: true`` and those of the credential headers
  (``Authorization``, ``Cookie``, ``X-Api-Key``, ``Proxy-Authorization``), each stored encrypted; the
  URL's credentials (userinfo password, query parameters named like credentials) and the values of
  the body's credential-named fields (``token``, ``password``, ``secret``, ``api_key``, ``auth``...,
  at any depth, every scalar below such a field);
- ``restart`` (``command``) strategy: every ``env`` value (a variable's name says too little: users
  put tokens in ``DATABASE_URL`` as well as in ``API_TOKEN``).

The strategies' own validation (API writes and declared components alike) keeps a masked copy in the
parameters and the real URL, body and environment in one token under ``secrets``
(``app.healing.secretbox``); :func:`shown_recovery` masks whatever a row holds (rows written before
this rule included) and never shows a ciphertext.

Sending the mask back (a client that PATCHes what it read) keeps the stored value of the strategy at
the same position, but only while the strategy keeps its target: a webhook its URL's scheme, host and
port, a command its ``argv``. A changed target must be given its credentials again, so nobody who may
edit a policy can send a stored secret somewhere else (or have a new command print it).
"""

from __future__ import annotations

import json
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
COMMAND_KINDS = ("restart", "command")
SECRETS_KEY = "secrets"  # as in app.healing.secretbox: the strategy's sealed parts
INVALID = "invalid recovery policy"
_MISSING = object()


def _strategy_params(entry: Any, kinds: tuple[str, ...]) -> dict[str, Any] | None:
    """The parameters of a strategy entry of one of ``kinds``, nested (``params``) or flat; None for
    others."""
    if not isinstance(entry, Mapping) or entry.get("kind") not in kinds:
        return None
    if isinstance(entry.get("params"), Mapping):
        return dict(entry["params"])
    return {k: v for k, v in entry.items() if k not in ("kind", "action_timeout")}


def _webhook_params(entry: Any) -> dict[str, Any] | None:
    return _strategy_params(entry, (WEBHOOK,))


def _with_params(entry: Mapping[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    shaped = {"kind": entry["kind"], "params": params}
    if "action_timeout" in entry:
        shaped["action_timeout"] = entry["action_timeout"]
    return shaped


def _is_secret(header: Mapping[str, Any]) -> bool:
    return bool(header.get("secret")) or str(header.get("name", "")).lower() in ALWAYS_SECRET_HEADERS


def is_secret_field(name: Any) -> bool:
    """Whether a body field's name says it holds a credential."""
    return is_secret_query_name(str(name))


def masked_body(body: Any, secret: bool = False) -> Any:
    """A webhook body with every scalar under a credential-named field replaced by the mask."""
    if isinstance(body, Mapping):
        return {k: masked_body(v, secret or is_secret_field(k)) for k, v in body.items()}
    if isinstance(body, list):
        return [masked_body(v, secret) for v in body]
    if secret and body is not None and not isinstance(body, bool):
        return MASK
    return body


def _body_secrets(body: Any, secret: bool = False) -> list[str]:
    if isinstance(body, Mapping):
        return [s for k, v in body.items() for s in _body_secrets(v, secret or is_secret_field(k))]
    if isinstance(body, list):
        return [s for v in body for s in _body_secrets(v, secret)]
    return [str(body)] if secret and body is not None and not isinstance(body, bool) else []


def _restored(new: Any, old: Any, path: str, problems: list[str]) -> Any:
    """``new`` with each mask replaced by the value at the same place in ``old``."""
    if new == MASK:
        if old is _MISSING or old == MASK:
            problems.append(path)
        return old if old is not _MISSING else new
    if isinstance(new, Mapping):
        return {
            k: _restored(
                v, old.get(k, _MISSING) if isinstance(old, Mapping) else _MISSING, f"{path}.{k}", problems
            )
            for k, v in new.items()
        }
    if isinstance(new, list):
        return [
            _restored(
                v, old[i] if isinstance(old, list) and i < len(old) else _MISSING, f"{path}[{i}]", problems
            )
            for i, v in enumerate(new)
        ]
    return new


def _refuse_masks(paths: list[str], target: str) -> None:
    if paths:
        raise ValidationFailed(
            INVALID,
            details={
                "problems": [
                    f"{path}: {MASK} stands for a stored secret, and only while the {target}; "
                    "send the real value"
                    for path in paths
                ]
            },
        )


def _revealed(params: dict[str, Any] | None, box: Any) -> dict[str, Any] | None:
    """Stored parameters with their sealed parts opened (an unreadable token keeps nothing)."""
    if params is None or not isinstance(params.get(SECRETS_KEY), str):
        return params
    rest = {k: v for k, v in params.items() if k != SECRETS_KEY}
    if box is None:
        return rest
    try:
        return {**rest, **json.loads(box.decrypt(params[SECRETS_KEY]))}
    except Exception:  # noqa: BLE001 - an old key, a damaged row: the masks cannot be resolved
        return rest


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
        if header.get("value") == MASK:
            kept = _stored_header(previous, header["name"]) if keeps_target else None
            if kept is None:
                _refuse_masks([f"{where}.headers[{j}]"], "URL keeps its scheme, host and port")
            header = kept  # type: ignore[assignment]
        sealed.append(header)
    return sealed


def _sealed_webhook(params: dict[str, Any], old: dict[str, Any] | None, where: str) -> dict[str, Any]:
    old_url = old.get("url") if old else None
    url = params.get("url")
    if isinstance(url, str):
        params["url"] = url = restore_url(
            url, old_url if isinstance(old_url, str) else None, f"{where}.url", INVALID
        )
    keeps_target = isinstance(url, str) and isinstance(old_url, str) and same_origin(url, old_url)
    if "headers" in params:
        params["headers"] = _sealed_headers(params["headers"], old, keeps_target, where)
    if "body" in params:
        problems: list[str] = []
        old_body = old.get("body", _MISSING) if old and keeps_target else _MISSING
        params["body"] = _restored(params["body"], old_body, f"{where}.body", problems)
        _refuse_masks(problems, "URL keeps its scheme, host and port")
    return params


def _sealed_command(params: dict[str, Any], old: dict[str, Any] | None, where: str) -> dict[str, Any]:
    env = params.get("env")
    if not isinstance(env, Mapping):
        return params  # the strategy's own validation names the problem
    keeps_target = old is not None and old.get("argv") == params.get("argv")
    old_env: Mapping[str, Any] = {}
    if old is not None and keeps_target and isinstance(old.get("env"), Mapping):
        old_env = old["env"]
    problems: list[str] = []
    params["env"] = {
        name: _restored(value, old_env.get(name, _MISSING), f"{where}.env.{name}", problems)
        for name, value in env.items()
    }
    _refuse_masks(problems, "command keeps its argv")
    return params


def seal_recovery(recovery: Any, previous: Mapping[str, Any] | None, box: Any = None) -> Any:
    """``recovery`` as the client sent it, ready for validation: masks replaced by the stored values
    of ``previous`` (the stored, normalised policy, its sealed parts opened with ``box``; None on
    create). The strategies' validation then encrypts the secrets."""
    if not isinstance(recovery, Mapping) or not isinstance(recovery.get("strategies"), list):
        return recovery
    before = (previous or {}).get("strategies") or []
    strategies: list[Any] = []
    for i, entry in enumerate(recovery["strategies"]):
        where = f"recovery.strategies[{i}]"
        stored = before[i] if i < len(before) else None
        if (params := _webhook_params(entry)) is not None:
            old = _revealed(_webhook_params(stored), box)
            strategies.append(_with_params(entry, _sealed_webhook(params, old, where)))
        elif (params := _strategy_params(entry, COMMAND_KINDS)) is not None:
            old = _revealed(_strategy_params(stored, COMMAND_KINDS), box)
            strategies.append(_with_params(entry, _sealed_command(params, old, where)))
        else:
            strategies.append(entry)
    return {**recovery, "strategies": strategies}


def shown_recovery(recovery: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A stored recovery policy for a response: no secret header value, URL credential, credential
    body field or environment value, no ciphertext, for every role."""
    if recovery is None:
        return None
    shown = dict(recovery)
    if not isinstance(recovery.get("strategies"), list):
        return shown
    strategies: list[Any] = []
    for entry in recovery["strategies"]:
        if (params := _webhook_params(entry)) is not None:
            params.pop(SECRETS_KEY, None)
            if isinstance(params.get("url"), str):
                params["url"] = display_url(params["url"])
            if isinstance(params.get("headers"), list):
                params["headers"] = [
                    {"name": h.get("name"), "value": MASK, "secret": True}
                    if isinstance(h, Mapping) and _is_secret(h)
                    else h
                    for h in params["headers"]
                ]
            if "body" in params:
                params["body"] = masked_body(params["body"])
            strategies.append(_with_params(entry, params))
        elif (params := _strategy_params(entry, COMMAND_KINDS)) is not None:
            params.pop(SECRETS_KEY, None)
            if isinstance(params.get("env"), Mapping):
                params["env"] = dict.fromkeys(params["env"], MASK)
            strategies.append(_with_params(entry, params))
        else:
            strategies.append(entry)
    shown["strategies"] = strategies
    return shown


def webhook_secret_values(
    headers: list[Mapping[str, Any]], sent: Mapping[str, str], url: str, body: Any = None
) -> list[str]:
    """The credentials a webhook strategy sends, in clear: the values of its secret (or
    credential-named) headers and their tokens, the URL's password and its credential query values,
    its body's credential fields. What the receiver answers is shown to every role, so these are
    masked out of it first."""
    found: set[str] = set(_body_secrets(body))
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
    """``value`` with every encrypted header value and sealed part replaced by its plaintext (for
    comparison only)."""
    if isinstance(value, Mapping) and isinstance(value.get(SECRETS_KEY), str):
        try:
            secret = json.loads(box.decrypt(value[SECRETS_KEY]))
        except Exception:  # noqa: BLE001 - unreadable: never equal to anything
            return object()
        value = {**{k: v for k, v in value.items() if k != SECRETS_KEY}, **secret}
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
    if box is None or _sealed_shape(stored) != _sealed_shape(wanted):
        return False  # e.g. a row stored before its secrets were sealed: written again, sealed
    return _opened(stored, box) == _opened(wanted, box)


def _sealed_shape(value: Any) -> Any:
    """``value`` with every ciphertext replaced by a marker: what is sealed, not with which token."""
    if isinstance(value, Mapping):
        return {
            k: True if k in (SECRETS_KEY, "value_encrypted") and isinstance(v, str) else _sealed_shape(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_sealed_shape(v) for v in value]
    return value
