"""Channel management: validation, SSRF checks, encryption at rest, masking, test sends."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config.settings import Settings
from app.core.errors import Conflict, NotFound, ValidationFailed
from app.core.locales import check_language
from app.db.models import Channel, DeliveryAttempt, NotificationStatus
from app.db.types import utcnow
from app.notify.channels import OutgoingNotification, channel_kind
from app.notify.delivery import send
from app.notify.schemas import ChannelCreate, ChannelOut, ChannelTestResult, ChannelUpdate
from app.notify.service import NotificationService
from app.outbound.ssrf import UnsafeURL, check_url_async
from app.security.crypto import SecretBox


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"invalid channel {field}", details={"fields": [{"field": field, "message": message}]}
    )


class ChannelService:
    def __init__(self, session: AsyncSession, settings: Settings, box: SecretBox):
        self.session = session
        self.settings = settings
        self.box = box

    def out(self, channel: Channel) -> ChannelOut:
        try:
            config = channel_kind(channel.kind).masked(self.box.decrypt_json(channel.config_encrypted))
        except Exception:  # noqa: BLE001 - an undecryptable config is shown as such, never raised
            config = {"error": "cannot be decrypted with the configured keys"}
        return ChannelOut(
            id=channel.id,
            name=channel.name,
            kind=channel.kind,
            config=config,
            language=channel.language,
            enabled=channel.enabled,
            severities=list(channel.severities or []),
            matchers=dict(channel.matchers or {}),
            escalation_only=channel.escalation_only,
            escalate_to=channel.escalate_to_id,
            escalate_after=channel.escalate_after,
            source=channel.source or "api",
            created_at=channel.created_at,
            updated_at=channel.updated_at,
        )

    async def _validated_config(self, kind: str, config: dict[str, Any]) -> dict[str, Any]:
        try:
            handler = channel_kind(kind)
        except ValueError as exc:
            raise _invalid("kind", str(exc)) from None
        try:
            config = handler.validate(config)
        except ValidationError as exc:
            fields = [
                {"field": "config." + ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
                for e in exc.errors()
            ]
            raise ValidationFailed("invalid channel config", details={"fields": fields}) from None
        for url in handler.urls(config):
            try:
                await check_url_async(url, self.settings.security.ssrf_allowlist)
            except UnsafeURL as exc:
                # A name that does not resolve now may later: every send checks the connection
                # again (SSRF-guarded resolver and socket), so only refuse what is unsafe now.
                if not str(exc).startswith("cannot resolve host"):
                    raise _invalid("config.url", f"refused: {exc}") from None
        return config

    def _check_language(self, language: str) -> None:
        try:
            check_language(language)
        except ValueError as exc:
            raise _invalid("language", str(exc)) from None

    async def _check_escalation(self, channel_id: int | None, target_id: int | None) -> None:
        seen = {channel_id}
        current = target_id
        while current is not None:
            if current in seen:
                raise _invalid("escalate_to", "the escalation chain would loop")
            seen.add(current)
            target = await self.session.get(Channel, current)
            if target is None:
                raise _invalid("escalate_to", f"channel {current} does not exist")
            current = target.escalate_to_id

    async def get(self, channel_id: int) -> Channel:
        channel = await self.session.get(Channel, channel_id)
        if channel is None:
            raise NotFound(f"channel {channel_id} not found")
        return channel

    async def list(self) -> list[Channel]:
        return list((await self.session.execute(select(Channel).order_by(Channel.name))).scalars())

    async def create(self, data: ChannelCreate) -> Channel:
        config = await self._validated_config(data.kind, data.config)
        language = data.language or self.settings.alerting.default_language
        self._check_language(language)
        if await self.session.scalar(select(Channel.id).where(Channel.name == data.name)) is not None:
            raise Conflict(f"channel {data.name!r} already exists")
        await self._check_escalation(None, data.escalate_to)
        channel = Channel(
            name=data.name,
            kind=data.kind,
            config_encrypted=self.box.encrypt_json(config),
            language=language,
            enabled=data.enabled,
            severities=list(data.severities),
            matchers=dict(data.matchers),
            escalation_only=data.escalation_only,
            escalate_to_id=data.escalate_to,
            escalate_after=data.escalate_after,
        )
        self.session.add(channel)
        await self.session.flush()
        return channel

    @staticmethod
    def refuse_config_owned(channel: Channel) -> None:
        if channel.source == "config":
            raise Conflict(
                f"channel {channel.name!r} is declared in the configuration file; edit it there",
                details={"source": "config"},
            )

    async def update(self, channel_id: int, data: ChannelUpdate) -> Channel:
        channel = await self.get(channel_id)
        self.refuse_config_owned(channel)
        fields = data.model_dump(exclude_unset=True)
        if "config" in fields and fields["config"] is not None:
            stored = self.box.decrypt_json(channel.config_encrypted)
            try:
                sent = channel_kind(channel.kind).unmasked(fields["config"], stored)
            except ValueError as exc:
                raise _invalid("config", str(exc)) from None
            merged = {**stored, **sent}
            channel.config_encrypted = self.box.encrypt_json(
                await self._validated_config(channel.kind, merged)
            )
        if fields.get("language") is not None:
            self._check_language(fields["language"])
            channel.language = fields["language"]
        if "escalate_to" in fields:
            await self._check_escalation(channel.id, fields["escalate_to"])
            channel.escalate_to_id = fields["escalate_to"]
        for key in ("enabled", "severities", "matchers", "escalation_only", "escalate_after"):
            if key in fields and (fields[key] is not None or key == "escalate_after"):
                setattr(channel, key, fields[key])
        channel.updated_at = utcnow()
        await self.session.flush()
        return channel

    async def delete(self, channel_id: int) -> None:
        channel = await self.get(channel_id)
        self.refuse_config_owned(channel)
        await self.session.delete(channel)
        await self.session.flush()

    async def test(self, channel_id: int, http) -> ChannelTestResult:
        """Send a test message now and log it like any delivery."""
        channel = await self.get(channel_id)
        notification = await NotificationService(self.session).enqueue(
            channel, None, "test", payload={"kind": "test", "created_at": utcnow().isoformat()}
        )
        outgoing = OutgoingNotification(
            id=notification.id,
            idempotency_key=notification.idempotency_key,
            kind="test",
            payload=notification.payload,
            language=channel.language,
            channel_name=channel.name,
        )
        result = await send(
            http,
            channel_kind(channel.kind),
            self.box.decrypt_json(channel.config_encrypted),
            outgoing,
            self.settings,
        )
        response = result.response
        now = utcnow()
        notification.attempts = 1
        notification.status = NotificationStatus.DELIVERED if result.ok else NotificationStatus.FAILED
        notification.delivered_at = now if result.ok else None
        error = None if result.ok else (response.error or f"HTTP {response.status}")
        notification.last_error = error
        self.session.add(
            DeliveryAttempt(
                notification_id=notification.id,
                attempt=1,
                at=now,
                outcome="delivered" if result.ok else "failed",
                status_code=response.status,
                latency_ms=round(response.latency_s * 1000, 2),
                error=error,
            )
        )
        await self.session.flush()
        return ChannelTestResult(
            delivered=result.ok,
            status_code=response.status,
            latency_ms=round(response.latency_s * 1000, 2),
            error=error,
            notification_id=notification.id,
        )
