"""Loopback stand-ins for PagerDuty, Opsgenie, Teams and Discord that accept only the documented
request shapes (answering like the real service, or 400 with the problems), and a real SMTP server
(aiosmtpd) with login."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from typing import Any

from aiohttp import web

from tests.ports import free_port

PD_KEY = "R0UT1NGK3Y0123456789abcdefABCDEF"
OG_KEY = "0a1b2c3d-0000-1111-2222-333344445555"
SMTP_USER, SMTP_PASSWORD = "guard", "smtp-pass-0123"


def _check_keys(problems: list, where: str, doc: dict, allowed: set, required: set) -> None:
    for key in set(doc) - allowed:
        problems.append(f"{where}: unknown field {key!r}")
    for key in required - set(doc):
        problems.append(f"{where}: missing {key!r}")


def _str(problems: list, where: str, value: Any, limit: int, *, empty: bool = False) -> None:
    if not isinstance(value, str) or (not value and not empty) or len(value) > limit:
        problems.append(f"{where}: must be a string of 1..{limit} characters, got {value!r:.80}")


def pagerduty_problems(doc: Any) -> list[str]:
    p: list[str] = []
    if not isinstance(doc, dict):
        return ["body: must be an object"]
    _check_keys(
        p,
        "event",
        doc,
        {"routing_key", "event_action", "dedup_key", "payload", "client", "client_url", "links", "images"},
        {"routing_key", "event_action"},
    )
    if doc.get("routing_key") != PD_KEY:
        p.append("routing_key: unknown integration")
    action = doc.get("event_action")
    if action not in ("trigger", "acknowledge", "resolve"):
        p.append(f"event_action: {action!r}")
    if action in ("acknowledge", "resolve") or "dedup_key" in doc:
        _str(p, "dedup_key", doc.get("dedup_key"), 255)
    if action == "trigger":
        payload = doc.get("payload")
        if not isinstance(payload, dict):
            return [*p, "payload: required for trigger"]
        _check_keys(
            p,
            "payload",
            payload,
            {"summary", "source", "severity", "timestamp", "component", "group", "class", "custom_details"},
            {"summary", "source", "severity"},
        )
        _str(p, "payload.summary", payload.get("summary"), 1024)
        _str(p, "payload.source", payload.get("source"), 255)
        if payload.get("severity") not in ("critical", "error", "warning", "info"):
            p.append(f"payload.severity: {payload.get('severity')!r}")
        if "timestamp" in payload:
            try:
                datetime.fromisoformat(payload["timestamp"])
            except (TypeError, ValueError):
                p.append("payload.timestamp: not ISO 8601")
        for key in ("component", "group", "class"):
            if key in payload:
                _str(p, f"payload.{key}", payload[key], 255)
        if "custom_details" in payload and not isinstance(payload["custom_details"], dict):
            p.append("payload.custom_details: must be an object")
    return p


def opsgenie_problems(path: str, query: dict, headers: dict, doc: Any) -> list[str]:
    p: list[str] = []
    if headers.get("Authorization") != f"GenieKey {OG_KEY}":
        p.append("Authorization: must be 'GenieKey <api key>'")
    if not isinstance(doc, dict):
        return [*p, "body: must be an object"]
    if path == "/v2/alerts":
        _check_keys(
            p,
            "alert",
            doc,
            {
                "message",
                "alias",
                "description",
                "responders",
                "visibleTo",
                "actions",
                "tags",
                "details",
                "entity",
                "source",
                "priority",
                "user",
                "note",
            },
            {"message"},
        )
        _str(p, "message", doc.get("message"), 130)
        if "alias" in doc:
            _str(p, "alias", doc["alias"], 512)
        if "description" in doc:
            _str(p, "description", doc["description"], 15_000, empty=True)
        if doc.get("priority", "P3") not in ("P1", "P2", "P3", "P4", "P5"):
            p.append(f"priority: {doc.get('priority')!r}")
        if not isinstance(doc.get("tags", []), list):
            p.append("tags: must be a list")
        if not all(isinstance(v, str) for v in (doc.get("details") or {}).values()):
            p.append("details: values must be strings")
    else:
        parts = path.split("/")
        if (
            len(parts) != 5
            or parts[4] not in ("acknowledge", "close")
            or query.get("identifierType") != "alias"
        ):
            p.append(f"path: {path} {query}")
        _check_keys(p, parts[-1], doc, {"user", "source", "note"}, set())
        if "note" in doc:
            _str(p, "note", doc["note"], 25_000)
    return p


def teams_problems(doc: Any) -> list[str]:
    p: list[str] = []
    if not isinstance(doc, dict) or doc.get("type") != "message":
        return ["type: must be 'message'"]
    attachments = doc.get("attachments")
    if not isinstance(attachments, list) or len(attachments) != 1:
        return ["attachments: exactly one card"]
    att = attachments[0]
    if att.get("contentType") != "application/vnd.microsoft.card.adaptive":
        p.append("attachments[0].contentType: must be the adaptive card type")
    card = att.get("content") or {}
    if card.get("type") != "AdaptiveCard" or not isinstance(card.get("version"), str):
        p.append("content: must be an AdaptiveCard with a version")
    for i, element in enumerate(card.get("body") or [None]):
        kind = (element or {}).get("type")
        if kind == "TextBlock":
            _str(p, f"body[{i}].text", element.get("text"), 10_000)
        elif kind == "FactSet":
            for j, fact in enumerate(element.get("facts") or []):
                if set(fact) != {"title", "value"} or not all(isinstance(v, str) for v in fact.values()):
                    p.append(f"body[{i}].facts[{j}]: must be {{title, value}} strings")
        else:
            p.append(f"body[{i}].type: {kind!r}")
    return p


def discord_problems(doc: Any) -> list[str]:
    p: list[str] = []
    if not isinstance(doc, dict):
        return ["body: must be an object"]
    _check_keys(
        p,
        "message",
        doc,
        {"content", "username", "avatar_url", "tts", "embeds", "allowed_mentions", "flags", "thread_name"},
        set(),
    )
    if not doc.get("content") and not doc.get("embeds"):
        p.append("one of content or embeds is required")
    if "content" in doc:
        _str(p, "content", doc["content"], 2000)
    embeds = doc.get("embeds") or []
    if len(embeds) > 10:
        p.append("embeds: at most 10")
    for i, embed in enumerate(embeds):
        _check_keys(
            p,
            f"embeds[{i}]",
            embed,
            {
                "title",
                "description",
                "url",
                "timestamp",
                "color",
                "footer",
                "image",
                "thumbnail",
                "author",
                "fields",
            },
            set(),
        )
        _str(p, f"embeds[{i}].title", embed.get("title"), 256)
        if not isinstance(embed.get("color", 0), int) or not 0 <= embed.get("color", 0) <= 0xFFFFFF:
            p.append(f"embeds[{i}].color: an integer colour")
        for j, f in enumerate(embed.get("fields") or []):
            _str(p, f"embeds[{i}].fields[{j}].name", f.get("name"), 256)
            _str(p, f"embeds[{i}].fields[{j}].value", f.get("value"), 1024)
    if (doc.get("allowed_mentions") or {}).get("parse") != []:
        p.append("allowed_mentions.parse: must be [] (alert text must not ping anyone)")
    return p


@dataclass
class Providers:
    url: str = ""
    received: dict[str, list[dict]] = field(
        default_factory=lambda: {"pagerduty": [], "opsgenie": [], "teams": [], "discord": []}
    )
    problems: list[str] = field(default_factory=list)

    async def _read(self, request: web.Request) -> Any:
        if request.content_type != "application/json":
            return None
        try:
            return await request.json()
        except ValueError:
            return None

    def _refuse(self, who: str, problems: list[str]) -> web.Response:
        self.problems.extend(f"{who}: {x}" for x in problems)
        return web.json_response({"status": "invalid", "errors": problems}, status=400)

    async def pagerduty(self, request: web.Request) -> web.Response:
        doc = await self._read(request)
        if problems := pagerduty_problems(doc):
            return self._refuse("pagerduty", problems)
        self.received["pagerduty"].append(doc)
        return web.json_response(
            {
                "status": "success",
                "message": "Event processed",
                "dedup_key": doc.get("dedup_key", "generated"),
            },
            status=202,
        )

    async def opsgenie(self, request: web.Request) -> web.Response:
        doc = await self._read(request)
        if problems := opsgenie_problems(request.path, dict(request.query), dict(request.headers), doc):
            return self._refuse("opsgenie", problems)
        self.received["opsgenie"].append({"path": request.path, "body": doc})
        return web.json_response(
            {
                "result": "Request will be processed",
                "took": 0.01,
                "requestId": "43a29c5c-3dbf-4fa4-9c26-f4f71023e120",
            },
            status=202,
        )

    async def teams(self, request: web.Request) -> web.Response:
        doc = await self._read(request)
        if problems := teams_problems(doc):
            return self._refuse("teams", problems)
        self.received["teams"].append(doc)
        return web.Response(status=202)

    async def discord(self, request: web.Request) -> web.Response:
        doc = await self._read(request)
        if problems := discord_problems(doc):
            return self._refuse("discord", problems)
        self.received["discord"].append(doc)
        return web.Response(status=204)


@contextlib.asynccontextmanager
async def providers():
    prov = Providers()
    app = web.Application()
    app.router.add_post("/v2/enqueue", prov.pagerduty)
    app.router.add_post("/v2/alerts", prov.opsgenie)
    app.router.add_post("/v2/alerts/{alias}/{action}", prov.opsgenie)
    app.router.add_post("/workflows/{tail:.*}", prov.teams)
    app.router.add_post("/api/webhooks/{id}/{token}", prov.discord)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    prov.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    try:
        yield prov
    finally:
        await runner.cleanup()


@dataclass
class Mailbox:
    port: int = 0
    messages: list = field(default_factory=list)
    logins: list = field(default_factory=list)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("nobody@"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            (
                envelope.mail_from,
                list(envelope.rcpt_tos),
                message_from_bytes(envelope.content, policy=policy.default),
            )
        )
        return "250 Message accepted for delivery"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult

        ok = auth_data.login.decode() == SMTP_USER and auth_data.password.decode() == SMTP_PASSWORD
        self.logins.append((mechanism, auth_data.login.decode(), ok))
        return AuthResult(success=ok)


@contextlib.contextmanager
def smtp_server():
    from aiosmtpd.controller import Controller

    port = free_port()
    box = Mailbox(port=port)
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=port,
        authenticator=box.authenticate,
        auth_require_tls=False,
        auth_required=True,
    )
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


def self_signed(tmp_path, host: str = "127.0.0.1"):
    """(cert.pem, key.pem) of a certificate for ``host`` signed by itself (it is its own CA)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test mail relay")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "relay.pem", tmp_path / "relay.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@contextlib.contextmanager
def starttls_server(cert_path, key_path):
    """A real SMTP server that requires STARTTLS before AUTH."""
    import ssl

    from aiosmtpd.controller import Controller

    port = free_port()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    box = Mailbox(port=port)
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=port,
        authenticator=box.authenticate,
        tls_context=context,
        require_starttls=True,
        auth_require_tls=True,
        auth_required=True,
    )
    controller.start()
    try:
        yield box
    finally:
        controller.stop()
