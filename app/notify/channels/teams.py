"""Microsoft Teams through a Workflows ("When a Teams webhook request is received") webhook: a
message with one Adaptive Card attachment (the Office 365 connector MessageCard is retired).

Shape (learn.microsoft.com, "Create incoming webhooks with Workflows"): ``{"type": "message",
"attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": {"type":
"AdaptiveCard", "version": "1.4", "body": [...]}}]}``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.notify.channels.base import HttpChannelKind, OutgoingNotification, PreparedRequest, json_bytes
from app.notify.channels.common import message

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
COLOURS = {"critical": "attention", "warning": "warning", "info": "accent"}


class TeamsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        max_length=2048, description="the workflow's webhook URL (secret: it carries a signature)"
    )


def teams_message(notification: OutgoingNotification) -> dict:
    msg = message(notification)
    colour = "good" if notification.kind == "resolved" else COLOURS.get(msg.severity, "default")
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "text": msg.title,
                "weight": "Bolder",
                "size": "Medium",
                "wrap": True,
                "color": colour,
            },
            {"type": "FactSet", "facts": [{"title": title, "value": value} for title, value in msg.fields]},
        ],
    }
    return {
        "type": "message",
        "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": card}],
    }


class TeamsChannel(HttpChannelKind):
    kind = "teams"
    config_model = TeamsConfig

    def build(self, config: dict, notification: OutgoingNotification) -> PreparedRequest:
        return PreparedRequest(
            url=config["url"],
            body=json_bytes(teams_message(notification)),
            headers={"Content-Type": "application/json"},
        )
