"""The secret box healing uses for webhook header values marked ``secret``: a view of the app's
``app.security.crypto.SecretBox`` (Fernet, ``PIPELINE_ENCRYPTION_KEY``, multi-key rotation) that turns
every failure into ``SecretBoxError`` and never echoes a token. The runtime's strategy registry hands it
to the webhook strategy; a registry built without a box (``config validate``) refuses secret values."""

from __future__ import annotations

from typing import Any


class SecretBoxError(ValueError):
    pass


class HealingSecrets:
    def __init__(self, box: Any | None) -> None:
        self.box = box

    def _require(self) -> Any:
        if self.box is None:
            raise SecretBoxError(
                "secret values need an encryption key (PIPELINE_ENCRYPTION_KEY); none is configured"
            )
        return self.box

    def encrypt(self, plaintext: str) -> str:
        return self._require().encrypt(plaintext)

    def decrypt(self, token: str) -> str:
        box = self._require()
        try:
            return box.decrypt(token)
        except Exception as exc:  # noqa: BLE001 - ConfigurationError etc.: never echo the token
            raise SecretBoxError(str(exc)) from None
