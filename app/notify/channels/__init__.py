"""Channel kinds, by name. A kind validates its configuration, masks it, and builds the HTTP request."""

from __future__ import annotations

from app.notify.channels.base import (
    ChannelKind,
    HttpChannelKind,
    OutgoingNotification,
    OwnTransportChannelKind,
    PreparedRequest,
)
from app.notify.channels.discord import DiscordChannel
from app.notify.channels.email import EmailChannel
from app.notify.channels.opsgenie import OpsgenieChannel
from app.notify.channels.pagerduty import PagerDutyChannel
from app.notify.channels.slack import SlackChannel
from app.notify.channels.teams import TeamsChannel
from app.notify.channels.webhook import WebhookChannel

CHANNEL_KINDS: dict[str, ChannelKind] = {
    kind.kind: kind
    for kind in (
        SlackChannel(),
        WebhookChannel(),
        EmailChannel(),
        PagerDutyChannel(),
        OpsgenieChannel(),
        TeamsChannel(),
        DiscordChannel(),
    )
}


def channel_kind(kind: str) -> ChannelKind:
    try:
        return CHANNEL_KINDS[kind]
    except KeyError:
        raise ValueError(
            f"unknown channel kind {kind!r}; known: {', '.join(sorted(CHANNEL_KINDS))}"
        ) from None


__all__ = [
    "CHANNEL_KINDS",
    "ChannelKind",
    "HttpChannelKind",
    "OutgoingNotification",
    "OwnTransportChannelKind",
    "PreparedRequest",
    "channel_kind",
]
