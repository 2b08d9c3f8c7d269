"""Secrets at rest: Fernet encryption with key rotation (MultiFernet), and masking for display.

Keys come from ``settings.security.encryption_key`` (``PIPELINE_ENCRYPTION_KEY``, comma separated,
newest first): the first key encrypts, every key decrypts, so rotating is "prepend the new key,
re-encrypt what is stored (``pipeline-guard secrets rotate``, ``app.security.key_rotation``), drop
the old key". A value that is not a Fernet key (32 url-safe base64 bytes) is stretched into one with
SHA-256, so a passphrase works too. In development without a key one is generated and persisted
under ``data_dir`` (like the JWT secret); production refuses to start without one
(``config.production_problems``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from app.config.settings import Settings
from app.core.errors import ConfigurationError

log = logging.getLogger("pipeline_guard.crypto")

MASK = "********"


def _fernet_key(material: str) -> bytes:
    raw = material.strip().encode()
    try:
        if len(base64.urlsafe_b64decode(raw)) == 32:
            return raw
    except (binascii.Error, ValueError):
        pass
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest())


def resolve_encryption_keys(settings: Settings) -> list[str]:
    keys = [k.get_secret_value() for k in settings.security.encryption_key if k.get_secret_value().strip()]
    if keys:
        return keys
    if settings.env == "production":
        raise ConfigurationError("PIPELINE_ENCRYPTION_KEY is required in production")
    path = Path(settings.data_dir) / "encryption_key"
    if path.exists():
        return [path.read_text().strip()]
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key().decode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process of this data dir won the race: use its key
        return [path.read_text().strip()]
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    log.warning("no PIPELINE_ENCRYPTION_KEY set: generated one at %s (development only)", path)
    return [key]


class SecretBox:
    """Encrypts and decrypts small secrets (strings or JSON documents)."""

    def __init__(self, keys: list[str]):
        if not keys:
            raise ConfigurationError("at least one encryption key is needed")
        self._newest = Fernet(_fernet_key(keys[0]))
        self._fernet = MultiFernet([self._newest, *(Fernet(_fernet_key(k)) for k in keys[1:])])

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        return cls(resolve_encryption_keys(settings))

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            # Never echo the token; the usual cause is a key removed from the rotation list.
            raise ConfigurationError(
                "a stored secret cannot be decrypted with the configured encryption keys"
            ) from None

    def encrypt_json(self, value: Any) -> str:
        return self.encrypt(json.dumps(value, separators=(",", ":"), sort_keys=True))

    def decrypt_json(self, token: str) -> Any:
        return json.loads(self.decrypt(token))

    def rotate(self, token: str) -> str:
        """Re-encrypt ``token`` with the newest key (after a key was prepended)."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise ConfigurationError(
                "a stored secret cannot be decrypted with the configured encryption keys"
            ) from None

    def on_newest_key(self, token: str) -> bool:
        """Whether the newest key alone opens ``token`` (nothing to rotate)."""
        try:
            self._newest.decrypt(token.encode())
        except InvalidToken:
            return False
        return True


def mask(value: str | None) -> str | None:
    """A secret for display: never any of its characters."""
    if value is None:
        return None
    return MASK if value else ""


def mask_url(url: str | None) -> str | None:
    """Scheme and host only: webhook URLs often carry their token in the path or query."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return MASK
    return f"{parts.scheme}://{host}{port}/{MASK}"
