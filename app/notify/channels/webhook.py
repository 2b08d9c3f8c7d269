"""Generic JSON webhook: a versioned payload, an idempotency key, and an HMAC-SHA256 signature.

Receivers verify ``X-Pipeline-Guard-Signature: sha256=<hex>`` = HMAC-SHA256(secret, raw body) and
drop repeats by ``Idempotency-Key`` (the same for every try of one notification).
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from app.core import http_headers
from app.notify.channels.base import HttpChannelKind, OutgoingNotification, PreparedRequest, json_bytes
from app.notify.templates import render

PAYLOAD_VERSION = "1"
SIGNATURE_HEADER = "X-Pipeline-Guard-Signature"
RESERVED_HEADERS = {"content-type", "content-length", "host", "idempotency-key", SIGNATURE_HEADER.lower()}


class WebhookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048)
    secret: str | None = Field(default=None, min_length=16, max_length=256, description="HMAC-SHA256 key")
    headers: dict[str, str] | None = Field(
        default=None, description="extra headers (e.g. Authorization); secret"
    )

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str] | None, info: ValidationInfo) -> dict[str, str] | None:
        if value is None:
            return None
        url = info.data.get("url")
        if any(k.lower() == "authorization" for k in value) and isinstance(url, str) and _has_userinfo(url):
            # aiohttp refuses to send both: every notification would fail.
            raise ValueError("an Authorization header cannot be combined with credentials in the URL")
        if len(value) > 16:
            raise ValueError("at most 16 extra headers")
        for key, text in value.items():
            if key.lower() in RESERVED_HEADERS or not http_headers.valid_name(key):
                raise ValueError(f"header {key!r} is not allowed (letters, digits and !#$%&'*+-.^_`|~)")
            if not http_headers.valid_value(text):
                # Never echo the value: it may be a secret.
                raise ValueError(f"header {key!r}: the value must be one line without control characters")
        return value


def _has_userinfo(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.username is not None or parts.password is not None


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_payload(notification: OutgoingNotification) -> dict:
    message = render(notification.payload, notification.language, channel_name=notification.channel_name)
    return {
        "version": PAYLOAD_VERSION,
        "idempotency_key": notification.idempotency_key,
        "kind": notification.kind,
        "title": message.title,
        "language": notification.language,
        "alert": notification.payload.get("alert"),
        "created_at": notification.payload.get("created_at"),
    }


class WebhookChannel(HttpChannelKind):
    kind = "webhook"
    config_model = WebhookConfig
    secret_fields = ("secret", "headers")

    def build(self, config: dict, notification: OutgoingNotification) -> PreparedRequest:
        body = json_bytes(webhook_payload(notification))
        headers = dict(config.get("headers") or {})
        headers.update(
            {
                "Content-Type": "application/json",
                "Idempotency-Key": notification.idempotency_key,
                "X-Pipeline-Guard-Event": notification.kind,
            }
        )
        if config.get("secret"):
            headers[SIGNATURE_HEADER] = sign(config["secret"], body)
        return PreparedRequest(url=config["url"], body=body, headers=headers)
