"""Slack incoming webhook: the seed's payload (text + one attachment coloured by severity)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.notify.channels.base import HttpChannelKind, OutgoingNotification, PreparedRequest, json_bytes
from app.notify.templates import render

SEVERITY_COLOURS = {"critical": "#d00000", "warning": "#f2c744", "info": "#439fe0", "resolved": "#2eb886"}


class SlackConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048, description="the incoming-webhook URL (secret: its path is the token)")
    channel: str | None = Field(default=None, max_length=80)
    username: str | None = Field(default=None, max_length=80)


def slack_payload(notification: OutgoingNotification, config: dict) -> dict:
    message = render(notification.payload, notification.language, channel_name=notification.channel_name)
    colour = (
        SEVERITY_COLOURS["resolved"]
        if notification.kind == "resolved"
        else SEVERITY_COLOURS.get(message.severity, SEVERITY_COLOURS["info"])
    )
    body = {
        "text": message.title,
        "attachments": [
            {
                "color": colour,
                "fallback": message.title,
                "fields": [
                    {"title": title, "value": value, "short": index == 0}
                    for index, (title, value) in enumerate(message.fields)
                ],
                "footer": "pipeline-guard",
            }
        ],
    }
    if config.get("channel"):
        body["channel"] = config["channel"]
    if config.get("username"):
        body["username"] = config["username"]
    return body


class SlackChannel(HttpChannelKind):
    kind = "slack"
    config_model = SlackConfig

    def build(self, config: dict, notification: OutgoingNotification) -> PreparedRequest:
        return PreparedRequest(
            url=config["url"],
            body=json_bytes(slack_payload(notification, config)),
            headers={"Content-Type": "application/json", "Idempotency-Key": notification.idempotency_key},
        )
