"""E-mail over SMTP: one plain-text message per notification, behind the same durable outbox.

The standard library's ``smtplib`` runs in a worker thread under the alerting request timeout (a
socket timeout on every read and an overall deadline), so a dead mail server cannot stall the
sender loop. ``security``: ``starttls`` (default, port 587), ``tls`` (implicit TLS, port 465) or
``none`` (a relay on a trusted network). The server's address goes through the same SSRF policy as
webhooks. A 5xx answer (unknown mailbox, refused sender, bad credentials) is permanent; anything
else is retried with back-off. Every try of one notification carries the same ``Message-ID``, so a
mail system that saw the first try can drop the repeat.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import time
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.notify.channels.base import ChannelKind, OutgoingNotification, PreparedRequest
from app.notify.channels.common import message, plain_text
from app.outbound.http import OutboundResponse
from app.outbound.ssrf import UnsafeURL, check_url_async

MAX_RECIPIENTS = 20


class EmailConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(min_length=1, max_length=253)
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = Field(default=None, max_length=256)
    password: str | None = Field(default=None, max_length=256, description="secret")
    from_address: str = Field(max_length=254)
    to: list[str] = Field(min_length=1, max_length=MAX_RECIPIENTS)
    subject_prefix: str = Field(default="", max_length=64)
    ca_file: str | None = Field(
        default=None,
        max_length=4096,
        description="PEM file of the CA that signed a private relay's certificate",
    )

    @field_validator("ca_file")
    @classmethod
    def _readable(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ssl.create_default_context(cafile=value)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"cannot load CA certificates from {value!r}: {exc}") from None
        return value

    @field_validator("from_address")
    @classmethod
    def _address(cls, value: str) -> str:
        if "@" not in value or any(c in value for c in "\r\n"):
            raise ValueError("must be an e-mail address")
        return value

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            if "@" not in address or any(c in address for c in "\r\n,;"):
                raise ValueError(f"{address!r} is not an e-mail address")
        return value


def email_message(notification: OutgoingNotification, config: dict) -> EmailMessage:
    msg = message(notification)
    mail = EmailMessage()
    prefix = config.get("subject_prefix") or ""
    mail["Subject"] = f"{prefix} {msg.title}".strip() if prefix else msg.title
    mail["From"] = config["from_address"]
    mail["To"] = ", ".join(config["to"])
    mail["Date"] = formatdate(usegmt=True)
    mail["Message-ID"] = f"<{notification.idempotency_key}@pipeline-guard>"
    mail["X-Pipeline-Guard-Event"] = notification.kind
    mail.set_content(plain_text(msg) + "\n\n-- \npipeline-guard\n")
    return mail


def _send_blocking(config: dict, mail: EmailMessage, timeout: float) -> None:
    host, port, security = config["host"], config["port"], config.get("security", "starttls")
    # Certificates are always verified (host name included); a private relay brings its CA in ca_file.
    context = ssl.create_default_context(cafile=config.get("ca_file"))
    client: smtplib.SMTP
    if security == "tls":
        client = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
    else:
        client = smtplib.SMTP(host, port, timeout=timeout)
    with client:
        client.ehlo()
        if security == "starttls":
            client.starttls(context=context)
            client.ehlo()
        if config.get("username"):
            client.login(config["username"], config.get("password") or "")
        client.send_message(mail)


class EmailChannel(ChannelKind):
    kind = "email"
    config_model = EmailConfig
    url_fields = ()
    secret_fields = ("password",)
    transport = "smtp"

    def urls(self, config: dict[str, Any]) -> list[str]:
        # The SSRF policy speaks URLs: the mail server is judged by its host and port like a webhook's.
        return [f"http://{config['host']}:{config.get('port', 587)}/"]

    def build(self, config: dict, notification: OutgoingNotification) -> PreparedRequest:
        raise NotImplementedError("e-mail is delivered over SMTP, not HTTP")

    async def deliver(
        self, config: dict, notification: OutgoingNotification, settings: Any
    ) -> tuple[OutboundResponse, bool]:
        started = time.monotonic()
        try:
            for url in self.urls(config):
                await check_url_async(url, settings.security.ssrf_allowlist)
        except UnsafeURL as exc:
            return OutboundResponse(status=None, error=f"refused: {exc}"), True
        timeout = settings.alerting.request_timeout
        mail = email_message(notification, config)
        try:
            async with asyncio.timeout(timeout * 3):  # connect, TLS and the exchange each get `timeout`
                await asyncio.to_thread(_send_blocking, config, mail, timeout)
        except smtplib.SMTPResponseException as exc:
            code = exc.smtp_code
            text = (
                exc.smtp_error.decode(errors="replace")
                if isinstance(exc.smtp_error, bytes)
                else str(exc.smtp_error)
            )
            return (
                OutboundResponse(
                    status=code, error=f"SMTP {code}: {text[:200]}", latency_s=time.monotonic() - started
                ),
                500 <= code < 600,
            )
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            return (
                OutboundResponse(
                    status=codes[0] if codes else None,
                    error=f"recipients refused: {codes}",
                    latency_s=time.monotonic() - started,
                ),
                all(500 <= c < 600 for c in codes),
            )
        except TimeoutError:
            return OutboundResponse(
                status=None, error=f"timeout after {timeout:g}s", latency_s=time.monotonic() - started
            ), False
        except ssl.SSLCertVerificationError as exc:
            return OutboundResponse(
                status=None,
                error=f"TLS certificate not trusted: {exc.verify_message}",
                latency_s=time.monotonic() - started,
            ), False
        except (OSError, smtplib.SMTPException) as exc:
            return OutboundResponse(
                status=None,
                error=f"SMTP error: {type(exc).__name__}: {str(exc)[:200]}",
                latency_s=time.monotonic() - started,
            ), False
        # 250 is what the server answered to the end of DATA; smtplib raises on anything else.
        return OutboundResponse(status=250, latency_s=time.monotonic() - started), False
