"""Line breaks never reach an e-mail header: a channel's ``subject_prefix`` with one is a 422 (it
was stored, and every later send raised before the outbox could record it, so the notification was
re-claimed forever without an attempt in the delivery log), and alert text with one is folded into
the subject instead of failing the message."""

from __future__ import annotations

from app.notify.channels.base import OutgoingNotification
from app.notify.channels.email import email_message

CONFIG = {
    "host": "mail.example.org",
    "port": 587,
    "from_address": "guard@example.org",
    "to": ["a@example.org"],
}


async def test_subject_prefix_with_a_line_break_is_refused(guard):
    admin = await guard.headers("admin")
    response = await guard.client.post(
        "/api/v1/channels",
        headers=admin,
        json={
            "name": "mail",
            "kind": "email",
            "config": {**CONFIG, "subject_prefix": "[guard]\r\nBcc: someone@example.net"},
        },
    )
    assert response.status_code == 422, response.text
    assert set(response.json()["error"]) == {"type", "message", "details", "timestamp"}
    assert (await guard.client.get("/api/v1/channels", headers=admin)).json()["items"] == []


def test_alert_text_with_line_breaks_stays_in_one_subject_line():
    notification = OutgoingNotification(
        id=1,
        idempotency_key="k",
        kind="firing",
        payload={
            "kind": "firing",
            "alert": {"severity": "critical", "component": "etl\r\nBcc: x@example.net"},
        },
        language="en",
        channel_name="mail",
    )
    mail = email_message(notification, {**CONFIG, "subject_prefix": "[guard]"})
    assert "\n" not in mail["Subject"] and "\r" not in mail["Subject"]
    assert mail["Subject"].startswith("[guard] [") and "etl" in mail["Subject"]
    assert mail["Bcc"] is None
