"""Channels declared in the config file (``channels:``), synced at start by the alert upkeep loop.

Declared channels are created or updated by name with ``source: config`` (validated, SSRF-checked
and encrypted like the API does; the API then refuses to change them with a 409); config channels
no longer declared are disabled, never deleted (their delivery log stays). ``escalate_to`` names
another declared channel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from app.db.models import Channel
from app.db.session import session_scope
from app.db.types import utcnow
from app.notify.channel_service import ChannelService

if TYPE_CHECKING:
    from app.platform.core import Core
    from app.security.crypto import SecretBox

SOURCE_CONFIG = "config"


async def sync_declared_channels(state: Core, box: SecretBox) -> dict[str, list[str]]:
    report: dict[str, list[str]] = {"created": [], "updated": [], "disabled": []}
    declared = {d.name: d for d in state.settings.channels}
    async with session_scope(state.sessionmaker) as session:
        service = ChannelService(session, state.settings, box)
        existing = {c.name: c for c in (await session.execute(select(Channel))).scalars()}
        for name, decl in declared.items():
            config = await service._validated_config(decl.kind, decl.config)
            wanted = {
                "kind": decl.kind,
                "language": decl.language or state.settings.alerting.default_language,
                "enabled": decl.enabled,
                "severities": list(decl.severities),
                "matchers": dict(decl.matchers),
                "escalation_only": decl.escalation_only,
                "escalate_after": decl.escalate_after,
                "source": SOURCE_CONFIG,
            }
            channel = existing.get(name)
            if channel is None:
                channel = Channel(name=name, config_encrypted=box.encrypt_json(config), **wanted)
                session.add(channel)
                existing[name] = channel
                report["created"].append(name)
                continue
            changed = {k: v for k, v in wanted.items() if getattr(channel, k) != v}
            try:
                same_config = box.decrypt_json(channel.config_encrypted) == config
            except Exception:  # noqa: BLE001 - unreadable with today's keys: the file's version wins
                same_config = False
            if changed or not same_config:
                for key, value in changed.items():
                    setattr(channel, key, value)
                if not same_config:
                    channel.config_encrypted = box.encrypt_json(config)
                channel.updated_at = utcnow()
                report["updated"].append(name)
        await session.flush()
        for name, decl in declared.items():
            target = existing[decl.escalate_to].id if decl.escalate_to else None
            if existing[name].escalate_to_id != target:
                existing[name].escalate_to_id = target
                if name not in report["created"] and name not in report["updated"]:
                    report["updated"].append(name)
        for name, channel in existing.items():
            if name not in declared and channel.source == SOURCE_CONFIG and channel.enabled:
                channel.enabled = False
                report["disabled"].append(name)
        await session.flush()
    return report
