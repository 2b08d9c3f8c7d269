"""The secret box healing uses for the secrets of recovery strategies (webhook header values marked
``secret``, URL credentials and credential fields of a webhook body, a command's environment): a view
of the app's ``app.security.crypto.SecretBox`` (Fernet, ``PIPELINE_ENCRYPTION_KEY``, multi-key
rotation) that turns every failure into ``SecretBoxError`` and never echoes a token. The runtime's
strategy registry hands it to the strategies. A registry built without a box (``config validate``,
which stores nothing) validates secret values and leaves them as given."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# The key under which a strategy's validated parameters keep their secret parts, in one token.
SECRETS_KEY = "secrets"


class SecretBoxError(ValueError):
    pass


class HealingSecrets:
    def __init__(self, box: Any | None) -> None:
        self.box = box

    @property
    def available(self) -> bool:
        return self.box is not None

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

    def sealed(self, params: dict[str, Any], secret: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` (already masked for display) with the real values of ``secret`` kept in one
        token under ``secrets``; without a box (nothing is stored) the real values stay in place."""
        if not secret:
            return params
        if not self.available:
            return {**params, **secret}
        return {**params, SECRETS_KEY: self.encrypt(json.dumps(dict(secret)))}

    def revealed(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Validated parameters with their secret parts put back, to act with (never stored or shown)."""
        if not isinstance(params.get(SECRETS_KEY), str):
            return dict(params)
        secret = json.loads(self.decrypt(params[SECRETS_KEY]))
        return {**{k: v for k, v in params.items() if k != SECRETS_KEY}, **secret}
