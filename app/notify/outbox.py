"""The outbox sender: claims due notifications, delivers them, records every try.

Claim (commit) -> send (no transaction open) -> record the outcome (commit, only if our claim still
holds). Each claimed notification is delivered by its own task: the loop never waits for a send, so
a receiver that hangs until the request timeout delays nobody else. A channel with
``MAX_IN_FLIGHT_PER_CHANNEL`` sends open is left out of the next claims until one finishes (a dead receiver
cannot take every slot), and at most ``MAX_IN_FLIGHT`` sends are open in all. A crash between claim and
record leaves the row ``sending`` until its lease ends, then another sender (or this one after a restart)
tries again with the same idempotency key, so a notification is never lost and receivers can drop the rare
repeat.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

import aiohttp
from sqlalchemy import func, select, update
from sqlalchemy.engine import CursorResult

from app.db.models import (
    Alert,
    AlertStatus,
    Channel,
    DeliveryAttempt,
    Notification,
    NotificationStatus,
    Severity,
)
from app.db.session import session_scope
from app.notify.channels import ChannelKind, OutgoingNotification, channel_kind
from app.notify.claim import claim_strategy
from app.notify.delivery import SendResult, retry_delay, send
from app.platform.loops import LoopService

if TYPE_CHECKING:
    from app.platform.core import Core
    from app.security.crypto import SecretBox

log = logging.getLogger("pipeline_guard.notify")
MAX_BATCHES_PER_RUN = 10
MAX_IN_FLIGHT_PER_CHANNEL = 4
MAX_IN_FLIGHT = 200


@dataclass
class Claimed:
    id: int
    token: str
    attempts: int
    channel_id: int
    channel_name: str
    kind: ChannelKind | None
    config: dict | None
    outgoing: OutgoingNotification
    problem: str | None = None
    # An unreadable channel config (this replica's keys can't decrypt it) may be readable by another
    # replica, or after the admin fixes PIPELINE_ENCRYPTION_KEY: retry with back-off, don't fail at once.
    problem_retryable: bool = False


class OutboxSender(LoopService):
    name = "notify-outbox"

    def __init__(self, state: Core, *, secret_box: SecretBox, interval: float | None = None):
        alerting = state.settings.alerting
        super().__init__(interval or alerting.outbox_interval, metrics=state.metrics)
        self.state = state
        self.secret_box = secret_box  # channel credentials, decrypted to send
        self.settings = state.settings
        self.http: aiohttp.ClientSession | None = None
        self._in_flight: dict[int, str] = {}
        self._deliveries: set[asyncio.Task] = set()
        self._per_channel: dict[int, int] = {}

    async def on_start(self) -> None:
        from app.outbound.http import make_session

        self.http = make_session(ssrf_allow=self.settings.security.ssrf_allowlist)

    async def on_stop(self) -> None:
        await self._cancel_deliveries()
        await self._release_in_flight()

    async def _cancel_deliveries(self) -> None:
        pending = set(self._deliveries)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self.http is not None:
            await self.http.close()
            self.http = None

    async def stop(self, timeout: float | None = None) -> None:
        timeout = self.settings.alerting.stop_timeout if timeout is None else timeout
        if self._deliveries:
            # Open sends get the stop timeout to finish; on_stop cancels the rest and hands them back
            # (outside the loop's own stop timeout, so the hand-back itself is never cut short).
            await asyncio.wait(set(self._deliveries), timeout=timeout)
        await super().stop(timeout)

    async def run_once(self) -> None:
        if self.http is None:
            await self.on_start()
        for _ in range(MAX_BATCHES_PER_RUN):
            limit = min(self.settings.alerting.outbox_batch, MAX_IN_FLIGHT - len(self._deliveries))
            if limit <= 0:
                break
            busy = [cid for cid, n in self._per_channel.items() if n >= MAX_IN_FLIGHT_PER_CHANNEL]
            batch = await self.claim(limit=limit, exclude_channels=busy)
            over: dict[int, str] = {}
            for item in batch:
                if self._per_channel.get(item.channel_id, 0) >= MAX_IN_FLIGHT_PER_CHANNEL:
                    over[item.id] = item.token  # one batch may hold more for a channel than it may open
                else:
                    self._spawn(item)
            if over:
                await self._release(over)
            if len(batch) < limit:
                break
        await refresh_gauges(self.state)

    def _spawn(self, item: Claimed) -> None:
        self._per_channel[item.channel_id] = self._per_channel.get(item.channel_id, 0) + 1
        task = asyncio.get_running_loop().create_task(self.deliver(item), name=f"notify:{item.id}")
        self._deliveries.add(task)

        def finished(done: asyncio.Task) -> None:
            self._deliveries.discard(done)
            left = self._per_channel.get(item.channel_id, 1) - 1
            if left > 0:
                self._per_channel[item.channel_id] = left
            else:
                self._per_channel.pop(item.channel_id, None)

        task.add_done_callback(finished)

    async def drain(self) -> None:
        """Wait for the sends already started (tests, shutdown)."""
        while self._deliveries:
            await asyncio.gather(*set(self._deliveries), return_exceptions=True)

    # --- claim ----------------------------------------------------------------------------------
    async def claim(
        self, *, limit: int | None = None, exclude_channels: list[int] | None = None
    ) -> list[Claimed]:
        token = uuid.uuid4().hex
        alerting = self.settings.alerting
        lease = max(alerting.claim_lease, alerting.request_timeout + 5)
        async with session_scope(self.state.sessionmaker) as session:
            strategy = claim_strategy(session.get_bind().dialect.name)
            ids = await strategy.claim(
                session,
                limit=limit or alerting.outbox_batch,
                lease=lease,
                token=token,
                exclude_channels=exclude_channels or (),
            )
            if not ids:
                return []
            rows = (
                await session.execute(
                    select(Notification, Channel)
                    .join(Channel, Notification.channel_id == Channel.id)
                    .where(Notification.id.in_(ids))
                    .order_by(Notification.id)
                )
            ).all()
            box = self.secret_box
            claimed = []
            for notification, channel in rows:
                outgoing = OutgoingNotification(
                    id=notification.id,
                    idempotency_key=notification.idempotency_key,
                    kind=notification.kind,
                    payload=notification.payload,
                    language=channel.language,
                    channel_name=channel.name,
                )
                item = Claimed(
                    notification.id,
                    token,
                    notification.attempts,
                    channel.id,
                    channel.name,
                    None,
                    None,
                    outgoing,
                )
                try:
                    item.kind = channel_kind(channel.kind)
                    item.config = box.decrypt_json(channel.config_encrypted)
                except Exception as exc:  # noqa: BLE001 - a broken channel fails its rows, not the loop
                    item.problem = f"channel {channel.name!r} is unusable: {type(exc).__name__}"
                    item.problem_retryable = True
                if not channel.enabled:
                    item.problem, item.problem_retryable = f"channel {channel.name!r} is disabled", False
                claimed.append(item)
                self._in_flight[notification.id] = token
        return claimed

    # --- deliver --------------------------------------------------------------------------------
    async def deliver(self, item: Claimed) -> None:
        try:
            if item.problem:
                result = None
            elif self.http is None or item.kind is None or item.config is None:
                # run_once opens the session before it claims, and a row without a problem has both read
                raise RuntimeError("claimed without a session or a channel")
            else:
                result = await send(self.http, item.kind, item.config, item.outgoing, self.settings)
            await self.record(item, result)
        except asyncio.CancelledError:
            raise  # shutting down: on_stop hands the row back
        except Exception as exc:  # noqa: BLE001 - its own task: log; the claim's lease makes it retried
            log.warning(
                "notification %s to %s: outcome not recorded (%s)",
                item.id,
                item.channel_name,
                type(exc).__name__,
            )
        self._in_flight.pop(item.id, None)
        if len(self._deliveries) <= 1:  # the last open send: the gauges catch up now, not a tick later
            try:
                await refresh_gauges(self.state)
            except Exception as exc:  # noqa: BLE001 - the next tick refreshes them
                log.debug("outbox gauges not refreshed: %s", type(exc).__name__)

    async def record(self, item: Claimed, result: SendResult | None) -> None:
        attempt = item.attempts + 1
        async with session_scope(self.state.sessionmaker) as session:
            now = await claim_strategy(session.get_bind().dialect.name).now(session)
            values: dict = {"attempts": attempt, "claim_token": None, "claimed_until": None}
            if result is not None and result.ok:
                outcome = "delivered"
                values.update(status=NotificationStatus.DELIVERED, delivered_at=now, last_error=None)
            elif item.problem_retryable and attempt < self.settings.alerting.max_attempts:
                outcome = "retry"
                delay = retry_delay(attempt, self.settings, None)
                values.update(
                    status=NotificationStatus.PENDING,
                    last_error=_describe(item, result),
                    next_attempt_at=now + timedelta(seconds=delay),
                )
            elif result is None or result.permanent or attempt >= self.settings.alerting.max_attempts:
                outcome = "failed"
                values.update(status=NotificationStatus.FAILED, last_error=_describe(item, result))
            else:
                outcome = "retry"
                delay = retry_delay(attempt, self.settings, result.response.retry_after_s)
                values.update(
                    status=NotificationStatus.PENDING,
                    last_error=_describe(item, result),
                    next_attempt_at=now + timedelta(seconds=delay),
                )
            updated = await session.execute(
                update(Notification)
                .where(Notification.id == item.id, Notification.claim_token == item.token)
                .values(**values)
            )
            if cast("CursorResult[Any]", updated).rowcount != 1:  # an UPDATE's result is a CursorResult
                # Our lease ran out and another sender took the row over: its outcome counts, not ours.
                log.warning("notification %s: claim lost before the outcome was recorded", item.id)
                return
            response = result.response if result is not None else None
            session.add(
                DeliveryAttempt(
                    notification_id=item.id,
                    attempt=attempt,
                    at=now,
                    outcome=outcome,
                    status_code=response.status if response else None,
                    latency_ms=round(response.latency_s * 1000, 2) if response else None,
                    error=None if outcome == "delivered" else _describe(item, result),
                )
            )
        self.state.metrics.notifications.labels(item.channel_name, outcome).inc()
        if outcome != "delivered":
            # The channel name only: URLs and secrets never reach the log.
            log.info(
                "notification %s to %s: %s (%s)", item.id, item.channel_name, outcome, _describe(item, result)
            )

    async def _release_in_flight(self) -> None:
        """On shutdown, hand claimed rows back at once instead of waiting for their lease."""
        if not self._in_flight or self.state.sessionmaker is None:
            return
        held, self._in_flight = dict(self._in_flight), {}
        await self._release(held)

    async def _release(self, held: dict[int, str]) -> None:
        for notification_id in held:
            self._in_flight.pop(notification_id, None)
        try:
            async with session_scope(self.state.sessionmaker) as session:
                for notification_id, token in held.items():
                    await session.execute(
                        update(Notification)
                        .where(Notification.id == notification_id, Notification.claim_token == token)
                        .values(status=NotificationStatus.PENDING, claim_token=None, claimed_until=None)
                    )
        except Exception as exc:  # noqa: BLE001 - the lease will free them anyway
            log.warning("could not release %d claimed notifications: %s", len(held), type(exc).__name__)


def _describe(item: Claimed, result: SendResult | None) -> str:
    if result is None:
        return item.problem or "not sent"
    response = result.response
    if response.error:
        return response.error
    return f"HTTP {response.status}"


async def refresh_gauges(state: Core) -> None:
    """The firing alerts per severity and the notifications pending, in one statement (the outbox
    runs it every pass, mostly on an idle guard)."""
    pending = (
        select(func.count())
        .select_from(Notification)
        .where(Notification.status.in_((NotificationStatus.PENDING, NotificationStatus.SENDING)))
        .scalar_subquery()
    )
    severities = list(Severity)
    async with session_scope(state.sessionmaker) as session:
        *firing, waiting = (
            await session.execute(
                select(*(func.count().filter(Alert.severity == s.value) for s in severities), pending)
                .select_from(Alert)
                .where(Alert.status == AlertStatus.FIRING)
            )
        ).one()
    for severity, count in zip(severities, firing, strict=True):
        state.metrics.alerts_firing.labels(severity.value).set(count)
    state.metrics.outbox_pending.set(waiting)
