"""Heartbeats pushed by jobs: per-component ping tokens (hash stored only) and ping recording.
The scheduler evaluates heartbeat components from what is stored here (`evaluate_heartbeat`)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, NotFound, Unauthorized
from app.db.models import Component, ComponentState, HeartbeatPing
from app.db.types import utcnow
from app.healing.reruns import action_started_after

PING_TOKEN_BYTES = 32
MESSAGE_MAX_CHARS = 1000


@dataclass(frozen=True)
class RecordedPing:
    """What a stored ping says: the finished run's duration (None: unknown, or a ``start``), and
    whether it judged the component (False: a late finish of a run a recovery action replaced)."""

    duration_s: float | None
    judged: bool = True


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

    async def run_started_at(self, component_id: int, rid: str) -> datetime | None:
        """When run ``rid`` pinged ``start`` (its latest such ping still kept), or None."""
        q = select(func.max(HeartbeatPing.received_at)).where(
            HeartbeatPing.component_id == component_id,
            HeartbeatPing.rid == rid,
            HeartbeatPing.status == "start",
        )
        return (await self.session.execute(q)).scalar_one_or_none()

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
        rid: str | None = None,
    ) -> RecordedPing:
        """Store a ping. ``rid`` names the run it reports: a finish is timed from that run's own
        ``start`` (none when it never pinged one), and a finish of a run that started before the
        recovery action in flight is stored without touching the component's state: the replaced
        run's verdict is none on the rerun (docs/LIFECYCLE.md rule 12)."""
        if not component.check or component.check.get("kind") != "heartbeat":
            raise Conflict(
                f"component {component.name!r} is not a heartbeat component (its check kind is "
                f"{(component.check or {}).get('kind')!r})"
            )
        now = now or utcnow()
        judged = True
        if rid is not None and status != "start":
            run_start = await self.run_started_at(component.id, rid)
            if duration_s is None and run_start is not None:
                duration_s = max(0.0, (now - run_start).total_seconds())
            judged = not await action_started_after(self.session, component.id, run_start)
        if judged:
            duration_s = await self._update_state(component, status, duration_s, now, derive=rid is None)
        self.session.add(
            HeartbeatPing(
                component_id=component.id,
                received_at=now,
                status=status,
                duration_s=duration_s,
                message=(message or None) and message[:max_message],
                source=source,
                rid=rid,
            )
        )
        await self.session.flush()
        return RecordedPing(duration_s=duration_s if status != "start" else None, judged=judged)

    async def _update_state(
        self, component: Component, status: str, duration_s: float | None, now: datetime, *, derive: bool
    ) -> float | None:
        """The component's last ping, start and finished run's duration (returned); ``derive``: a
        finish without a duration is timed from the last ``/start`` (a ping that names no run)."""
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
                derive
                and duration_s is None
                and state.last_ping_status == "start"
                and state.last_start_at is not None
                and not await action_started_after(self.session, component.id, state.last_start_at)
            ):
                # The run's own duration, unless a recovery action started since its /start: the
                # success is then the rerun's, and its length unknown (docs/LIFECYCLE.md rule 12).
                duration_s = (now - state.last_start_at).total_seconds()
            state.last_duration_s = duration_s
        state.last_ping_at, state.last_ping_status = now, status
        return duration_s
