"""Opsgenie Alert API v2: create on firing, acknowledge and close by alias (one alias per alert).

Documented requests (docs.opsgenie.com, "Alert API"): ``POST /v2/alerts`` with ``message`` (≤ 130
chars), ``alias`` (≤ 512), ``description`` (≤ 15,000), ``priority`` P1–P5, ``source``, ``entity``,
``tags``, ``details``; ``POST /v2/alerts/{alias}/acknowledge?identifierType=alias`` and
``…/close?identifierType=alias`` with ``source`` and ``note``; header ``Authorization: GenieKey <key>``.
The answer is 202 ``{"result": "Request will be processed", "requestId": ...}``.
"""

from __future__ import annotations

from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from app.notify.channels.base import HttpChannelKind, OutgoingNotification, PreparedRequest, json_bytes
from app.notify.channels.common import TRIGGERING, alert_of, clip, dedup_key, message, plain_text

API_URL = "https://api.opsgenie.com"
PRIORITIES = {"critical": "P1", "warning": "P3", "info": "P5"}


class OpsgenieConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_key: str = Field(min_length=1, max_length=128, description="an API integration key; secret")
    url: str = Field(default=API_URL, max_length=2048, description="EU accounts: https://api.eu.opsgenie.com")
    tags: list[str] = Field(default_factory=list, max_length=20)
    source: str = Field(default="pipeline-guard", max_length=100)


def opsgenie_request(notification: OutgoingNotification, config: dict) -> tuple[str, dict]:
    """(path, body) of the request for this notification."""
    alias = dedup_key(notification)
    source = config.get("source") or "pipeline-guard"
    if notification.kind not in TRIGGERING:
        action = "close" if notification.kind == "resolved" else "acknowledge"
        msg = message(notification)
        note = clip(plain_text(msg), 25_000)
        return f"/v2/alerts/{quote(alias, safe='')}/{action}?identifierType=alias", {
            "source": source,
            "note": note,
        }
    alert, msg = alert_of(notification), message(notification)
    body = {
        "message": clip(msg.title, 130),
        "alias": alias,
        "description": clip(plain_text(msg), 15_000),
        "priority": PRIORITIES.get(alert.get("severity", "info"), "P5"),
        "source": source,
        "tags": list(config.get("tags") or []),
        "details": {str(k): clip(str(v), 8000) for k, v in (alert.get("labels") or {}).items()},
    }
    if alert.get("component"):
        body["entity"] = clip(str(alert["component"]), 512)
    return "/v2/alerts", body


class OpsgenieChannel(HttpChannelKind):
    kind = "opsgenie"
    config_model = OpsgenieConfig
    secret_fields = ("api_key",)
    forwards_acknowledgements = True

    def build(self, config: dict, notification: OutgoingNotification) -> PreparedRequest:
        path, body = opsgenie_request(notification, config)
        base = (config.get("url") or API_URL).rstrip("/")
        return PreparedRequest(
            url=base + path,
            body=json_bytes(body),
            headers={"Content-Type": "application/json", "Authorization": f"GenieKey {config['api_key']}"},
        )
