"""Credentials in check documents: write-only for every role, encrypted at rest.

An ``http`` check may carry secrets in three places: header values (``Authorization``, ``Cookie``,
``X-Api-Key``, ``Proxy-Authorization`` and every name listed in ``secret_headers``), the password of
the URL's userinfo, and query parameters whose name says they are credentials (``token``,
``api_key``, ``signature``...). When a check is saved, :func:`seal_check` replaces each secret by
``********`` in the stored document and keeps the real values in one Fernet token under
``secrets`` (the app's ``SecretBox``, ``PIPELINE_ENCRYPTION_KEY``). So the database row, every API
response (admins included: like channel secrets, these are write-only), the status page and the
logs only ever see the mask. The scheduler calls :func:`reveal_params` just before validating the
params it will probe with.

Sending the mask back (a client that PATCHes what it read) keeps the stored value, but only while
the URL still points at the same scheme, host and port: a changed target must be given its
credentials again, so nobody who may edit checks can redirect a stored secret to a host of theirs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from app.core.errors import ValidationFailed
from app.security.crypto import MASK

SECRETS_KEY = "secrets"
# Header names that always hold credentials, whatever `secret_headers` says.
ALWAYS_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})
_SECRET_QUERY = re.compile(
    r"(token|secret|passw(or)?d|pwd|api[-_]?key|apikey|access[-_]?key|auth|signature|^sig$|credential|session|^key$)",
    re.IGNORECASE,
)


def is_secret_query_name(name: str) -> bool:
    return bool(_SECRET_QUERY.search(name))


def _secret_header_names(check: Mapping[str, Any]) -> set[str]:
    return {str(h).lower() for h in check.get("secret_headers") or []} | ALWAYS_SECRET_HEADERS


def _origin(url: str) -> tuple[str, str, int | None] | None:
    try:
        parts = urlsplit(url)
        return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port
    except ValueError:
        return None


def display_url(url: str) -> str:
    """``url`` with the userinfo password and secret query values replaced by the mask."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return MASK
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    if parts.username is not None:
        user = parts.username
        netloc = f"{user}:{MASK}@{netloc}" if parts.password is not None else f"{user}@{netloc}"
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(is_secret_query_name(k) for k, _ in pairs):
        query = urlencode(
            [(k, MASK if is_secret_query_name(k) else v) for k, v in pairs], quote_via=quote, safe="*"
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def same_origin(url: str | None, other: str | None) -> bool:
    return bool(url) and bool(other) and _origin(url) == _origin(other)  # type: ignore[arg-type]


def restore_url(new: str, previous: str | None, field: str, error: str = "invalid check") -> str:
    """``new`` with masked parts taken from the stored ``previous`` URL (same origin only); a mask that
    cannot be resolved is a ``ValidationFailed`` with the message ``error``, naming ``field``."""
    parts = urlsplit(new)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    masked_password = parts.password == MASK
    masked_query = [k for k, v in pairs if v == MASK]
    if not masked_password and not masked_query:
        return new
    if previous is None or _origin(previous) != _origin(new):
        raise ValidationFailed(
            error,
            details={
                "problems": [
                    (
                        f"{field}: {MASK} stands for a stored secret, and only while the URL keeps its "
                        "scheme, host and port; send the real value"
                    )
                ]
            },
        )
    old = urlsplit(previous)
    old_query: dict[str, str] = {}
    for k, v in parse_qsl(old.query, keep_blank_values=True):
        old_query.setdefault(k, v)
    netloc = parts.netloc
    if masked_password:
        if old.password is None:
            raise ValidationFailed(error, details={"problems": [f"{field}: no stored password to keep"]})
        netloc = netloc.replace(f":{MASK}@", f":{quote(old.password, safe='')}@", 1)
    query = parts.query
    if masked_query:
        missing = [k for k in masked_query if k not in old_query]
        if missing:
            raise ValidationFailed(
                error,
                details={"problems": [f"{field}: no stored value for query parameter {missing[0]!r}"]},
            )
        query = urlencode([(k, old_query[k] if v == MASK else v) for k, v in pairs], quote_via=quote)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _stored_secrets(previous: Mapping[str, Any] | None, box) -> dict[str, Any]:
    if not previous or SECRETS_KEY not in previous:
        return {"headers": dict((previous or {}).get("headers") or {}), "url": (previous or {}).get("url")}
    return box.decrypt_json(previous[SECRETS_KEY])


def seal_check(
    check: dict[str, Any] | None, previous: Mapping[str, Any] | None, box
) -> dict[str, Any] | None:
    """The document to store for a validated ``check``: secrets masked, their values encrypted.

    ``previous`` is the stored document being replaced (None on create); masks in ``check`` keep
    its values. Raises ``ValidationFailed`` naming the field when a mask cannot be resolved."""
    if not check or check.get("kind") != "http":
        return check
    stored_prev = previous if previous and previous.get("kind") == "http" else None
    old = _stored_secrets(stored_prev, box) if stored_prev else {"headers": {}, "url": None}
    url = check.get("url")
    same_origin = bool(old["url"]) and isinstance(url, str) and _origin(old["url"]) == _origin(url)
    secret_names = _secret_header_names(check)
    old_headers = {str(k).lower(): v for k, v in (old.get("headers") or {}).items()}
    shown_headers: dict[str, str] = {}
    secret_headers: dict[str, str] = {}
    for name, value in (check.get("headers") or {}).items():
        if name.lower() not in secret_names:
            shown_headers[name] = value
            continue
        if value == MASK:
            kept = old_headers.get(name.lower())
            if kept is None or kept == MASK or not same_origin:
                raise ValidationFailed(
                    "invalid check",
                    details={
                        "problems": [
                            (
                                f"check.headers.{name}: {MASK} stands for a stored secret, and only while "
                                "the URL keeps its scheme, host and port; send the real value"
                            )
                        ]
                    },
                )
            value = kept
        secret_headers[name] = value
        shown_headers[name] = MASK
    sealed = dict(check)
    sealed["headers"] = shown_headers
    real_url: str | None
    if isinstance(url, str):
        real_url = restore_url(url, old["url"], "check.url")
        sealed["url"] = display_url(real_url)
    else:
        real_url = url
    if secret_headers or sealed.get("url") != real_url:
        sealed[SECRETS_KEY] = box.encrypt_json({"headers": secret_headers, "url": real_url})
    return sealed


def reveal_params(params: Mapping[str, Any], box) -> dict[str, Any]:
    """Check params with their secrets decrypted, for the probe only (never stored or shown)."""
    if SECRETS_KEY not in params:
        return dict(params)
    secrets = box.decrypt_json(params[SECRETS_KEY])
    revealed = {k: v for k, v in params.items() if k != SECRETS_KEY}
    headers = dict(revealed.get("headers") or {})
    headers.update(secrets.get("headers") or {})
    revealed["headers"] = headers
    if secrets.get("url"):
        revealed["url"] = secrets["url"]
    return revealed


def same_check(stored: Mapping[str, Any] | None, validated: Mapping[str, Any] | None, box) -> bool:
    """Whether the stored (sealed) document holds the same check as a freshly validated one."""
    if stored is None or validated is None:
        return stored == validated
    try:
        return reveal_params(stored, box) == dict(validated)
    except Exception:  # noqa: BLE001 - undecryptable: treat as changed, the new value is sealed again
        return False


def shown_check(check: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A check document for a response: never a secret nor its ciphertext, also for rows stored
    before secrets were sealed."""
    if check is None:
        return None
    shown = {k: v for k, v in check.items() if k != SECRETS_KEY}
    if check.get("kind") == "http":
        secret_names = _secret_header_names(check)
        if isinstance(check.get("headers"), Mapping):
            shown["headers"] = {
                k: (MASK if str(k).lower() in secret_names else v) for k, v in check["headers"].items()
            }
        if isinstance(check.get("url"), str):
            shown["url"] = display_url(check["url"])
    return shown
