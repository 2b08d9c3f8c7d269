"""What the incident-tool channels share: one stable key per alert, the text of a notification."""

from __future__ import annotations

from typing import Any

from app.notify.channels.base import OutgoingNotification
from app.notify.templates import RenderedMessage, render

# Notification kinds that open (or re-raise) the receiver's incident; the others change its state.
TRIGGERING = ("firing", "repeat", "escalation", "test")


def alert_of(notification: OutgoingNotification) -> dict[str, Any]:
    return notification.payload.get("alert") or {}


def dedup_key(notification: OutgoingNotification) -> str:
    """The same for every notification about one alert (trigger, acknowledge, resolve), so the
    receiver folds them into one incident; a test message gets its own."""
    alert_id = alert_of(notification).get("id")
    return (
        f"pipeline-guard-alert-{alert_id}"
        if alert_id is not None
        else f"pipeline-guard-test-{notification.id}"
    )


def message(notification: OutgoingNotification) -> RenderedMessage:
    return render(notification.payload, notification.language, channel_name=notification.channel_name)


def plain_text(msg: RenderedMessage) -> str:
    return "\n".join([msg.title, "", *(f"{title}: {value}" for title, value in msg.fields)])


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
