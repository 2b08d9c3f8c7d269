"""Re-encrypting every stored secret with the newest encryption key (`pipeline-guard secrets rotate`).

``PIPELINE_ENCRYPTION_KEY`` lists keys newest first: the first encrypts, every one decrypts. Rotating
is three steps: run every guard with ``new,old``; re-encrypt what is stored (this module); run with
``new`` alone. Without the middle step the old key can never be dropped: rows nobody edits keep
their old ciphertext for ever.

What is stored encrypted: each channel's configuration (``channels.config_encrypted``), and in the
components' ``check`` and ``recovery`` documents every sealed part (a string under ``secrets``) and
every encrypted webhook header (``value_encrypted``), at whatever depth the document holds them.
Only strings shaped like a Fernet token are touched there: a webhook body field that happens to be
named ``secrets`` holds the mask, not a token.

One transaction (rows locked, the SQLite write lock held), all or nothing: a token no configured key
opens stops the run and names its row, and nothing is written. Ciphertexts change, the plaintexts do
not, so no component's version moves (nothing reloads, no probe or heal sees a difference).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from app.core.errors import ConfigurationError
from app.db.models import Component
from app.db.models.notify import Channel
from app.db.session import hold_write_lock

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.security.crypto import SecretBox

TOKEN_KEYS = ("secrets", "value_encrypted")
# A Fernet token: version byte 0x80, then at least timestamp, IV and HMAC, url-safe base64.
_FERNET_SHAPE = re.compile(r"^gAAAAA[A-Za-z0-9_\-]{50,}={0,2}$")


@dataclass
class RotationReport:
    """What a rotation found (and, unless it was a dry run, re-encrypted)."""

    secrets: int = 0  # every stored token
    on_older_key: int = 0  # of those, the ones the newest key alone cannot open
    unreadable: list[str] = field(default_factory=list)  # where a token no configured key opens


def looks_like_token(value: Any) -> bool:
    return isinstance(value, str) and bool(_FERNET_SHAPE.match(value))


class _Rotator:
    def __init__(self, box: SecretBox, report: RotationReport) -> None:
        self.box = box
        self.report = report

    def token(self, token: str, where: str) -> str:
        self.report.secrets += 1
        if self.box.on_newest_key(token):
            return token
        try:
            rotated = self.box.rotate(token)
        except ConfigurationError:
            self.report.unreadable.append(where)
            return token
        self.report.on_older_key += 1
        return rotated

    def document(self, value: Any, where: str) -> Any:
        """``value`` with every token re-encrypted; the same object when nothing in it changed."""
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            changed = False
            for key, item in value.items():
                path = f"{where}.{key}"
                new = (
                    self.token(item, path)
                    if key in TOKEN_KEYS and looks_like_token(item)
                    else self.document(item, path)
                )
                changed |= new is not item
                out[key] = new
            return out if changed else value
        if isinstance(value, list):
            items = [self.document(item, f"{where}[{i}]") for i, item in enumerate(value)]
            return items if any(new is not old for new, old in zip(items, value, strict=True)) else value
        return value


async def rotate_stored_secrets(
    session: AsyncSession, box: SecretBox, *, dry_run: bool = False
) -> RotationReport:
    """Re-encrypt (or, with ``dry_run``, only count) every stored secret in the session's transaction.
    Raises ``ConfigurationError`` naming the rows whose tokens no configured key opens (the caller's
    transaction is then rolled back: nothing is written)."""
    await hold_write_lock(session)
    report = RotationReport()
    rotator = _Rotator(box, report)
    channels = (await session.execute(select(Channel).order_by(Channel.id).with_for_update())).scalars().all()
    for channel in channels:
        new = rotator.token(channel.config_encrypted, f"channel {channel.name!r}")
        if new is not channel.config_encrypted and not dry_run:
            channel.config_encrypted = new
    components = (
        (await session.execute(select(Component).order_by(Component.id).with_for_update(of=Component)))
        .scalars()
        .all()
    )
    for component in components:
        for attribute in ("check", "recovery"):
            stored = getattr(component, attribute)
            new = rotator.document(stored, f"component {component.name!r} {attribute}")
            if new is not stored and not dry_run:
                setattr(component, attribute, new)  # a new object: the JSON column sees the change
    if report.unreadable:
        raise ConfigurationError(
            "stored secrets that no configured encryption key opens (add the key they were written "
            "with to PIPELINE_ENCRYPTION_KEY, after the new one); nothing was changed",
            details={"problems": report.unreadable},
        )
    await session.flush()
    return report


__all__ = ["RotationReport", "looks_like_token", "rotate_stored_secrets"]
