"""A webhook receiver that accepts and never answers delays no other channel: the healthy
channel's notifications are delivered while the hanging one's send is still open."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from app.alerts.service import AlertService
from app.db.models import Channel, DeliveryAttempt, Notification
from app.notify.outbox import MAX_IN_FLIGHT_PER_CHANNEL, OutboxSender
from tests.conftest import make_settings, running_guard
from tests.notify.conftest import FAST, HOOK_SECRET


async def _channel(guard, name: str, url: str) -> None:
    r = await guard.client.post(
        "/api/v1/channels",
        headers=await guard.headers("admin"),
        json={"name": name, "kind": "webhook", "config": {"url": url, "secret": HOOK_SECRET}},
    )
    assert r.status_code == 201, r.text


async def _raise(guard, component: str) -> None:
    async with guard.session() as session:
        await AlertService(session, guard.runtime.settings).raise_alert(
            component=component, severity="critical", message=f"{component} down"
        )


async def _rows(guard) -> dict[tuple[str, str], str]:
    """(channel name, alert component) -> notification status."""
    async with guard.session() as session:
        rows = (
            await session.execute(
                select(Channel.name, Notification.payload, Notification.status).join(
                    Channel, Channel.id == Notification.channel_id
                )
            )
        ).all()
    return {(name, payload["alert"]["component"]): status for name, payload, status in rows}


async def _until(predicate, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.05)


async def test_hanging_receiver_does_not_delay_other_channels(db_url, tmp_path, silent_target, receiver):
    # The hung send stays open far longer than the test needs: only independence can make it pass.
    alerting = {**FAST, "request_timeout": 25, "claim_lease": 60, "stop_timeout": 0.2}
    settings = make_settings(
        db_url, tmp_path, security={"ssrf_allowlist": ["127.0.0.1/32"]}, alerting=alerting
    )
    async with running_guard(
        settings, build_services=lambda rt: [OutboxSender(rt.core, secret_box=rt.secret_box)]
    ) as guard:
        await _channel(guard, "hanging", silent_target.url("/hook"))
        await _channel(guard, "healthy", receiver.url + "/hook")
        await _raise(guard, "first")

        async def first_delivered_while_hanging_open():
            rows = await _rows(guard)
            return (
                rows.get(("healthy", "first")) == "delivered" and rows.get(("hanging", "first")) == "sending"
            )

        await _until(first_delivered_while_hanging_open)

        # More alerts than one channel may hold open sends: the hanging channel fills its slots,
        # the healthy one keeps flowing.
        for i in range(MAX_IN_FLIGHT_PER_CHANNEL + 3):
            await _raise(guard, f"later-{i}")

        async def later_delivered():
            rows = await _rows(guard)
            return all(
                rows.get(("healthy", f"later-{i}")) == "delivered"
                for i in range(MAX_IN_FLIGHT_PER_CHANNEL + 3)
            )

        await _until(later_delivered)
        rows = await _rows(guard)
        # The first hung send is still open (no try of the hanging channel has ended): nothing waited for it.
        async with guard.session() as session:
            ended = (
                await session.execute(
                    select(func.count())
                    .select_from(DeliveryAttempt)
                    .join(Notification, Notification.id == DeliveryAttempt.notification_id)
                    .join(Channel, Channel.id == Notification.channel_id)
                    .where(Channel.name == "hanging")
                )
            ).scalar_one()
        assert ended == 0
        assert rows[("hanging", "first")] == "sending"
        sending = sum(1 for (name, _), status in rows.items() if name == "hanging" and status == "sending")
        assert sending <= MAX_IN_FLIGHT_PER_CHANNEL
        assert sum(1 for (name, _), status in rows.items() if name == "hanging" and status == "pending") >= 3
