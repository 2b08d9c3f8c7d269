"""Encryption at rest for secret strategy parameters (webhook header values marked ``secret``).

Fernet via ``cryptography`` with key rotation: ``security.encryption_key`` is a list, the first key
encrypts and every key decrypts (MultiFernet) — the API the alerts issue documents for
``PIPELINE_ENCRYPTION_KEY``. When the shared ``app/crypto.py`` lands this module should delegate to it.
Outside production, with no encryption key configured, a key is derived from the service's secret key
so development works without extra setup (production refuses to start without one elsewhere).
"""

from __future__ import annotations

import base64
import hashlib
import logging

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

log = logging.getLogger("pipeline_guard.healing")

PREFIX = "fernet:"


class SecretBoxError(ValueError):
    pass


class SecretBox:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise SecretBoxError("no encryption key configured (PIPELINE_ENCRYPTION_KEY)")
        try:
            self._fernet = MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in keys])
        except (ValueError, TypeError) as exc:
            raise SecretBoxError(f"invalid encryption key: {type(exc).__name__}") from None

    @classmethod
    def from_settings(cls, settings, fallback_secret: str | None = None) -> SecretBox:
        keys = [k.get_secret_value() for k in settings.security.encryption_key]
        if not keys and fallback_secret and settings.env != "production":
            derived = base64.urlsafe_b64encode(hashlib.sha256(b"pipeline-guard/healing/" + fallback_secret.encode()).digest())
            keys = [derived.decode()]
        return cls(keys)

    def encrypt(self, plaintext: str) -> str:
        return PREFIX + self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        if not token.startswith(PREFIX):
            raise SecretBoxError("not an encrypted value")
        try:
            return self._fernet.decrypt(token[len(PREFIX):].encode()).decode()
        except InvalidToken:
            raise SecretBoxError("cannot decrypt: the value was encrypted with a key no longer configured") from None


_active: SecretBox | None = None


def configure(box: SecretBox | None) -> None:
    """Set by the healing wiring at startup (and by tests)."""
    global _active
    _active = box


def active() -> SecretBox:
    if _active is None:
        raise SecretBoxError("secret values need an encryption key (PIPELINE_ENCRYPTION_KEY); none is configured")
    return _active
