"""Discord webhook: one embed per notification, coloured by severity, mentions disabled.

Shape (discord.com/developers, "Execute Webhook"): ``content`` (≤ 2,000 chars), ``username``,
``embeds`` (≤ 10; ``title`` ≤ 256, ``description`` ≤ 4,096, ``color`` an integer, ``fields`` ≤ 25 with
``name`` ≤ 256 and ``value`` ≤ 1,024), ``allowed_mentions``; the answer is 204 No Content.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.notify.channels.base import HttpChannelKind, OutgoingNotification, PreparedRequest, json_bytes
from app.notify.channels.common import clip, message

COLOURS = {"critical": 0xD00000, "warning": 0xF2C744, "info": 0x439FE0, "resolved": 0x2EB886}


class DiscordConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048, description="the webhook URL (secret: its path is the token)")
    username: str | None = Field(default=None, max_length=80)


def discord_message(notification: OutgoingNotification, config: dict) -> dict:
    msg = message(notification)
    colour = (
        COLOURS["resolved"] if notification.kind == "resolved" else COLOURS.get(msg.severity, COLOURS["info"])
    )
    embed: dict = {
        "title": clip(msg.title, 256),
        "color": colour,
        "fields": [
            {"name": clip(title, 256), "value": clip(value or "-", 1024), "inline": index == 0}
            for index, (title, value) in enumerate(msg.fields[:25])
        ],
        "footer": {"text": "pipeline-guard"},
    }
    if notification.payload.get("created_at"):
        embed["timestamp"] = notification.payload["created_at"]
    body: dict = {
        "content": clip(msg.title, 2000),
        "embeds": [embed],
        # Alert text is untrusted: it must never ping @everyone or a role.
        "allowed_mentions": {"parse": []},
    }
    if config.get("username"):
        body["username"] = config["username"]
    return body


class DiscordChannel(HttpChannelKind):
    kind = "discord"
    config_model = DiscordConfig

    def build(self, config: dict, notification: OutgoingNotification) -> PreparedRequest:
        return PreparedRequest(
            url=config["url"],
            body=json_bytes(discord_message(notification, config)),
            headers={"Content-Type": "application/json"},
        )
