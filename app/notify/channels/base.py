"""What every channel kind provides."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel

from app.outbound.http import OutboundResponse
from app.security.crypto import MASK, mask, mask_url


@dataclass(frozen=True)
class OutgoingNotification:
    id: int
    idempotency_key: str
    kind: str
    payload: dict[str, Any]
    language: str
    channel_name: str


@dataclass(frozen=True)
class PreparedRequest:
    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"


class ChannelKind(ABC):
    """The configuration side every kind shares (validation, masks, the URLs the SSRF policy judges).
    A kind is one of the two below: it either builds an HTTP request for the outbox to send
    (:class:`HttpChannelKind`) or speaks its own protocol (:class:`OwnTransportChannelKind`)."""

    kind: ClassVar[str]
    config_model: ClassVar[type[BaseModel]]
    # Config keys holding URLs (masked to scheme://host/***) and other secrets (masked entirely).
    url_fields: ClassVar[tuple[str, ...]] = ("url",)
    secret_fields: ClassVar[tuple[str, ...]] = ()
    # Kinds whose receiver keeps its own incident (PagerDuty, Opsgenie) also hear acknowledgements.
    forwards_acknowledgements: ClassVar[bool] = False

    def validate(self, config: dict[str, Any]) -> dict[str, Any]:
        return self.config_model.model_validate(config).model_dump(exclude_none=True)

    def urls(self, config: dict[str, Any]) -> list[str]:
        return [config[k] for k in self.url_fields if config.get(k)]

    def masked(self, config: dict[str, Any]) -> dict[str, Any]:
        shown: dict[str, Any] = {}
        for key, value in config.items():
            if key in self.url_fields:
                shown[key] = mask_url(value)
            elif key in self.secret_fields:
                shown[key] = (
                    {k: mask(str(v)) for k, v in value.items()}
                    if isinstance(value, dict)
                    else mask(str(value))
                )
            else:
                shown[key] = value
        return shown

    def unmasked(self, config: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
        """``config`` (a partial update) with every masked value (as :meth:`masked` shows it) replaced
        by the stored one, so a client that PATCHes back what it read keeps the secrets. Masks hold
        only while every URL keeps its scheme, host and port: a stored secret never follows a channel
        to another receiver. Raises ``ValueError`` naming the key of a mask that cannot be resolved."""
        from app.security.check_secrets import same_origin

        resolved = {
            k: stored[k] if k in self.url_fields and stored.get(k) and v == mask_url(stored[k]) else v
            for k, v in config.items()
        }
        try:
            before, after = self.urls(stored), self.urls({**stored, **resolved})
            moved = len(before) != len(after) or not all(map(same_origin, before, after))
        except (KeyError, TypeError):  # an incomplete config: its validation names the problem
            moved = True
        out = dict(config)
        for key, value in config.items():
            old = stored.get(key)
            if key in self.url_fields:
                if old and value == mask_url(old):
                    out[key] = old
                elif isinstance(value, str) and MASK in value:
                    raise ValueError(f"{key}: {MASK} stands for the stored URL; send the whole URL")
            elif key in self.secret_fields:
                if isinstance(value, dict):
                    out[key] = {
                        k: self._kept(f"{key}.{k}", v, (old or {}).get(k), moved) for k, v in value.items()
                    }
                else:
                    out[key] = self._kept(key, value, old, moved)
        return out

    @staticmethod
    def _kept(key: str, value: Any, old: Any, moved: bool) -> Any:
        if value != MASK:
            return value
        if old is None or moved:
            raise ValueError(
                f"{key}: {MASK} stands for a stored secret, and only while the URL keeps its scheme, "
                "host and port; send the real value"
            )
        return old


class HttpChannelKind(ChannelKind):
    """A kind delivered over HTTP: it builds the request, the outbox sends it (SSRF-checked, bounded)."""

    @abstractmethod
    def build(self, config: dict[str, Any], notification: OutgoingNotification) -> PreparedRequest:
        """The HTTP request that delivers ``notification`` to this channel."""


class OwnTransportChannelKind(ChannelKind):
    """A kind that speaks its own protocol (e-mail over SMTP), as bounded as the outbox's HTTP."""

    @abstractmethod
    async def deliver(
        self, config: dict[str, Any], notification: OutgoingNotification, settings: Any
    ) -> tuple[OutboundResponse, bool]:
        """Deliver once, bounded; (response, permanent failure)."""


def json_bytes(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()
