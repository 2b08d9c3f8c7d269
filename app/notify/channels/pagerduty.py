"""PagerDuty Events API v2: ``trigger`` on firing, ``acknowledge`` on an acknowledgement,
``resolve`` on a resolve, all with one ``dedup_key`` per alert so PagerDuty keeps one incident.

Payload (developer.pagerduty.com, "Send an Alert Event"): ``routing_key``, ``event_action``,
``dedup_key``, and for a trigger ``payload{summary, source, severity, timestamp, component, group,
class, custom_details}``; the answer is 202 ``{"status": "success", "dedup_key": ...}``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.notify.channels.base import HttpChannelKind, OutgoingNotification, PreparedRequest, json_bytes
from app.notify.channels.common import TRIGGERING, alert_of, clip, dedup_key, message

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SEVERITIES = {"critical": "critical", "warning": "warning", "info": "info"}
ACTIONS = {"acknowledged": "acknowledge", "resolved": "resolve"}


class PagerDutyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    routing_key: str = Field(min_length=1, max_length=64, description="the integration (routing) key; secret")
    url: str = Field(default=EVENTS_URL, max_length=2048, description="EU accounts: events.eu.pagerduty.com")
    source: str = Field(default="pipeline-guard", max_length=255)


def pagerduty_event(notification: OutgoingNotification, config: dict) -> dict:
    action = "trigger" if notification.kind in TRIGGERING else ACTIONS.get(notification.kind, "trigger")
    event: dict = {
        "routing_key": config["routing_key"],
        "event_action": action,
        "dedup_key": dedup_key(notification),
        "client": "Pipeline Guard",
    }
    if action != "trigger":
        return event
    alert, msg = alert_of(notification), message(notification)
    summary = msg.title + (f" - {alert['message']}" if alert.get("message") else "")
    payload: dict = {
        "summary": clip(summary, 1024),
        "source": config.get("source") or "pipeline-guard",
        "severity": SEVERITIES.get(alert.get("severity", "info"), "info"),
        "class": "pipeline-guard",
        "custom_details": dict(msg.fields),
    }
    if alert.get("component"):
        payload["component"] = alert["component"]
    if (alert.get("labels") or {}).get("app"):
        payload["group"] = alert["labels"]["app"]
    if alert.get("first_seen"):
        payload["timestamp"] = alert["first_seen"]
    event["payload"] = payload
    return event


class PagerDutyChannel(HttpChannelKind):
    kind = "pagerduty"
    config_model = PagerDutyConfig
    secret_fields = ("routing_key",)
    forwards_acknowledgements = True

    def build(self, config: dict, notification: OutgoingNotification) -> PreparedRequest:
        return PreparedRequest(
            url=config.get("url") or EVENTS_URL,
            body=json_bytes(pagerduty_event(notification, config)),
            headers={"Content-Type": "application/json"},
        )
