"""Heartbeats pushed by jobs: per-component ping tokens (hash stored only) and ping recording.
The scheduler evaluates heartbeat components from what is stored here (`evaluate_heartbeat`)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, NotFound, Unauthorized
from app.db.models import Component, ComponentState, HeartbeatPing
from app.db.types import utcnow
from app.healing.reruns import action_started_after

PING_TOKEN_BYTES = 32
MESSAGE_MAX_CHARS = 1000


def hash_ping_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def ping_token_matches(token: str, stored_hash: str | None) -> bool:
    if not stored_hash:
        return False
    return hmac.compare_digest(hash_ping_token(token), stored_hash)


class HeartbeatService:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def component(self, name: str) -> Component:
        component = (
            (await self.session.execute(select(Component).where(Component.name == name)))
            .unique()
            .scalar_one_or_none()
        )
        if component is None:
            raise NotFound(f"component {name!r} not found")
        return component

    async def component_for_ping_token(self, name: str, token: str) -> Component:
        """The component ``name`` when ``token`` is its ping token. An unknown name gets the same
        answer as a wrong token: without credentials a caller must not learn which components exist."""
        q = select(Component).where(Component.name == name)
        component = (await self.session.execute(q)).unique().scalar_one_or_none()
        if component is None or not ping_token_matches(token, component.ping_token_hash):
            raise Unauthorized("invalid ping token for this component")
        return component

    async def component_by_ping_token(self, token_hash: str) -> Component | None:
        q = select(Component).where(Component.ping_token_hash == token_hash)
        return (await self.session.execute(q)).unique().scalar_one_or_none()

    async def new_ping_token(self, name: str) -> str:
        """Generate a token (returned once; only its hash is kept). Replaces any previous token."""
        component = await self.component(name)
        token = secrets.token_urlsafe(PING_TOKEN_BYTES)
        component.ping_token_hash = hash_ping_token(token)
        await self.session.flush()
        return token

    async def record(
        self,
        component: Component,
        *,
        status: str,
        duration_s: float | None,
        message: str | None,
        source: str,
        now: datetime | None = None,
        max_message: int = MESSAGE_MAX_CHARS,
    ) -> ComponentState:
        if not component.check or component.check.get("kind") != "heartbeat":
            raise Conflict(
                f"component {component.name!r} is not a heartbeat component (its check kind is "
                f"{(component.check or {}).get('kind')!r})"
            )
        now = now or utcnow()
        state = (
            await self.session.execute(
                select(ComponentState).where(ComponentState.component_id == component.id)
            )
        ).scalar_one_or_none()
        if state is None:
            state = ComponentState(component_id=component.id)
            self.session.add(state)
        if status == "start":
            state.last_start_at = now
        else:
            if (
                duration_s is None
                and state.last_ping_status == "start"
                and state.last_start_at is not None
                and not await action_started_after(self.session, component.id, state.last_start_at)
            ):
                # The run's own duration, unless a recovery action started since its /start: the
                # success is then the rerun's, and its length unknown (docs/LIFECYCLE.md rule 12).
                duration_s = (now - state.last_start_at).total_seconds()
            state.last_duration_s = duration_s
        state.last_ping_at, state.last_ping_status = now, status
        self.session.add(
            HeartbeatPing(
                component_id=component.id,
                received_at=now,
                status=status,
                duration_s=duration_s,
                message=(message or None) and message[:max_message],
                source=source,
            )
        )
        await self.session.flush()
        return state
