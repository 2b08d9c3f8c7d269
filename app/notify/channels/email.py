"""E-mail over SMTP: one plain-text message per notification, behind the same durable outbox.

The standard library's ``smtplib`` runs on a thread of its own under the alerting request timeout (a
socket timeout on every read and an overall deadline at which the socket is shut), so a dead or
trickling mail server can neither stall the sender loop nor keep threads, and never takes the event
loop's default executor, which resolves every host name the guard connects to. ``security``:
``starttls`` (default, port 587), ``tls`` (implicit TLS, port 465) or ``none`` (a relay on a trusted
network). The server's address goes through the same SSRF policy as webhooks: its name is
resolved once, checked, and the connection goes to those addresses (TLS still verifies the name).
A 5xx answer (unknown mailbox, refused sender, bad credentials) is permanent; anything else is
retried with back-off.
Every try of one notification carries the same ``Message-ID``, so a mail system that saw the first
try can drop the repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.notify.channels.base import OutgoingNotification, OwnTransportChannelKind
from app.notify.channels.common import message, plain_text
from app.outbound.http import OutboundResponse
from app.outbound.ssrf import UnsafeURL, checked_addresses

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
    subject_prefix: str = Field(default="", max_length=64, pattern=r"^[^\r\n]*$")
    ca_file: str | None = Field(
        default=None,
        max_length=4096,
        description="PEM file of the CA that signed a private relay's certificate",
    )

    @field_validator("ca_file")
    @classmethod
    def _readable(cls, value: str | None) -> str | None:
        if value is not None:
            tls_context(value)
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


CA_FILE_UNUSABLE = "cannot load CA certificates from this path (missing, unreadable or not PEM certificates)"


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """A verifying TLS context trusting ``ca_file`` too. Whether the path is missing, unreadable or
    holds no certificates gives one and the same error: whoever may configure a channel learns
    nothing about the guard's file system (no oracle)."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError, ValueError):
        raise ValueError(CA_FILE_UNUSABLE) from None


def email_message(notification: OutgoingNotification, config: dict) -> EmailMessage:
    msg = message(notification)
    mail = EmailMessage()
    prefix = config.get("subject_prefix") or ""
    # A header cannot hold a line break; a title is made of alert text, which is untrusted.
    title = " ".join(msg.title.splitlines())
    mail["Subject"] = f"{prefix} {title}".strip() if prefix else title
    mail["From"] = config["from_address"]
    mail["To"] = ", ".join(config["to"])
    mail["Date"] = formatdate(usegmt=True)
    mail["Message-ID"] = f"<{notification.idempotency_key}@pipeline-guard>"
    mail["X-Pipeline-Guard-Event"] = notification.kind
    mail.set_content(plain_text(msg) + "\n\n-- \npipeline-guard\n")
    return mail


class _Exchange:
    """The socket of one SMTP exchange, so the deadline can shut it from the event loop: a server
    that trickles a byte at a time never lets a read time out, and the thread would wait on it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._client: smtplib.SMTP | None = None
        self._sockets: list[socket.socket] = []
        self.aborted = False

    def watch(self, client: smtplib.SMTP, sock: socket.socket | None = None) -> None:
        with self._lock:
            self._client = client
            if sock is not None:
                self._sockets.append(sock)
            aborted = self.aborted
        if aborted:
            self.abort()

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            current = getattr(self._client, "sock", None)
            sockets = [*self._sockets, *([current] if current is not None else [])]
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _connected(
    base: type[smtplib.SMTP],
    exchange: _Exchange,
    host: str,
    addresses: list[str],
    port: int,
    **kwargs: Any,
) -> smtplib.SMTP:
    """An SMTP client of class ``base`` connected to ``host`` at one of ``addresses`` (those the SSRF
    policy checked: smtplib would resolve the name again, and the answer may differ), its connection
    registered with ``exchange`` as soon as it exists (the greeting is read inside the constructor).
    The name stays the client's host: TLS verifies the certificate against it (``server_hostname``)."""

    class Watched(base):  # type: ignore[valid-type, misc]
        def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
            error: OSError | None = None
            for address in addresses:
                try:
                    sock = super()._get_socket(address, port, timeout)
                except OSError as exc:
                    error = exc
                    continue
                exchange.watch(self, sock)
                return sock
            raise error or OSError(f"no address to connect to for {host!r}")

    client: smtplib.SMTP = Watched(host, port, **kwargs)
    return client


def _send_blocking(
    config: dict, addresses: list[str], mail: EmailMessage, timeout: float, exchange: _Exchange
) -> None:
    host, port, security = config["host"], config["port"], config.get("security", "starttls")
    # Certificates are always verified (host name included); a private relay brings its CA in ca_file.
    context = tls_context(config.get("ca_file"))
    if security == "tls":
        client = _connected(
            smtplib.SMTP_SSL, exchange, host, addresses, port, timeout=timeout, context=context
        )
    else:
        client = _connected(smtplib.SMTP, exchange, host, addresses, port, timeout=timeout)
    with client:
        client.ehlo()
        if security == "starttls":
            client.starttls(context=context)
            client.ehlo()
        if config.get("username"):
            client.login(config["username"], config.get("password") or "")
        client.send_message(mail)


async def _on_own_thread(function: Callable[[], None]) -> None:
    """Run ``function`` on a new daemon thread and wait for it (cancellable: the thread is then left
    to end by itself, which the caller makes quick by shutting its socket)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if done.done():
            return
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)

    def run() -> None:
        error: BaseException | None = None
        try:
            function()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting coroutine
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits any more
            loop.call_soon_threadsafe(settle, error)

    threading.Thread(target=run, name="pipeline-guard-smtp", daemon=True).start()
    await done


class EmailChannel(OwnTransportChannelKind):
    kind = "email"
    config_model = EmailConfig
    url_fields = ()
    secret_fields = ("password",)

    def urls(self, config: dict[str, Any]) -> list[str]:
        # The SSRF policy speaks URLs: the mail server is judged by its host and port like a webhook's.
        return [f"http://{config['host']}:{config.get('port', 587)}/"]

    async def deliver(
        self, config: dict, notification: OutgoingNotification, settings: Any
    ) -> tuple[OutboundResponse, bool]:
        started = time.monotonic()
        try:
            addresses = await checked_addresses(
                config["host"], config.get("port", 587), settings.security.ssrf_allowlist
            )
        except UnsafeURL as exc:
            return OutboundResponse(status=None, error=f"refused: {exc}"), True
        timeout = settings.alerting.request_timeout
        try:
            mail = email_message(notification, config)
        except ValueError as exc:  # a header the message cannot carry: no retry will change it
            return OutboundResponse(status=None, error=f"cannot build the message: {str(exc)[:200]}"), True
        exchange = _Exchange()
        try:
            async with asyncio.timeout(timeout * 3):  # connect, TLS and the exchange each get `timeout`
                await _on_own_thread(lambda: _send_blocking(config, addresses, mail, timeout, exchange))
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
        except asyncio.CancelledError:
            exchange.abort()
            raise
        except TimeoutError:
            exchange.abort()  # the thread's blocked read ends now, not when the server stops trickling
            return OutboundResponse(
                status=None, error=f"timeout after {timeout:g}s", latency_s=time.monotonic() - started
            ), False
        except ssl.SSLCertVerificationError as exc:
            return OutboundResponse(
                status=None,
                error=f"TLS certificate not trusted: {exc.verify_message}",
                latency_s=time.monotonic() - started,
            ), False
        except ValueError as exc:  # the CA file went away or changed since it was saved
            return OutboundResponse(status=None, error=str(exc), latency_s=time.monotonic() - started), False
        except (OSError, smtplib.SMTPException) as exc:
            return OutboundResponse(
                status=None,
                error=f"SMTP error: {type(exc).__name__}: {str(exc)[:200]}",
                latency_s=time.monotonic() - started,
            ), False
        # 250 is what the server answered to the end of DATA; smtplib raises on anything else.
        return OutboundResponse(status=250, latency_s=time.monotonic() - started), False
