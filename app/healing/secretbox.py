"""The secret box healing uses for webhook header values marked ``secret``: the app's
``app.security.crypto.SecretBox`` (Fernet, ``PIPELINE_ENCRYPTION_KEY``, multi-key rotation), registered at
startup by ``wiring.configure_process`` so strategy validation (which has no app state) can reach it."""

from __future__ import annotations

from typing import Any


class SecretBoxError(ValueError):
    pass


_active: Any = None


def configure(box: Any) -> None:
    global _active
    _active = box


class _Checked:
    def __init__(self, box: Any) -> None:
        self.box = box

    def encrypt(self, plaintext: str) -> str:
        return self.box.encrypt(plaintext)

    def decrypt(self, token: str) -> str:
        try:
            return self.box.decrypt(token)
        except Exception as exc:  # noqa: BLE001 - ConfigurationError etc.: never echo the token
            raise SecretBoxError(str(exc)) from None


def active() -> _Checked:
    if _active is None:
        raise SecretBoxError("secret values need an encryption key (PIPELINE_ENCRYPTION_KEY); none is configured")
    return _Checked(_active)
