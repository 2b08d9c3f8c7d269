"""The mail server's name is resolved once: the SSRF check and the connection use the same
addresses. A resolver that answers an allowed address to the check and an internal one afterwards
(DNS rebinding) must not steer the message to the internal server; TLS still verifies the
certificate against the name."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import running_guard

NAME = "mail.rebind.test"
ALLOWED, INTERNAL = "127.0.0.1", "127.0.0.2"


class Box:
    def __init__(self) -> None:
        self.messages: list[str] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.mail_from)
        return "250 accepted"


def _cert_for_name(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(NAME)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "mail.pem", tmp_path / "mail.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
def servers(tmp_path):
    """A STARTTLS server for NAME on the allowed address and a plain one on the internal address,
    on the same port."""
    cert, key = _cert_for_name(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with socket.socket() as s:
        s.bind((ALLOWED, 0))
        port = s.getsockname()[1]
    allowed, internal = Box(), Box()
    controllers = [
        Controller(allowed, hostname=ALLOWED, port=port, tls_context=context, require_starttls=True),
        Controller(internal, hostname=INTERNAL, port=port),
    ]
    for controller in controllers:
        controller.start()
    try:
        yield port, cert, allowed, internal
    finally:
        for controller in controllers:
            controller.stop()


@pytest.fixture
def rebinding_dns(monkeypatch):
    """NAME resolves to the allowed address, except on the thread that talks SMTP, where a second
    lookup answers the internal one."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host != NAME:
            return real(host, port, *args, **kwargs)
        address = INTERNAL if threading.current_thread().name == "pipeline-guard-smtp" else ALLOWED
        return real(address, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


async def test_mail_goes_to_the_checked_address_and_tls_verifies_the_name(
    notify_settings, servers, rebinding_dns
):
    port, cert, allowed, internal = servers
    async with running_guard(notify_settings) as guard:
        admin = await guard.headers("admin")
        created = await guard.client.post(
            "/api/v1/channels",
            headers=admin,
            json={
                "name": "mail",
                "kind": "email",
                "config": {
                    "host": NAME,
                    "port": port,
                    "from_address": "guard@example.org",
                    "to": ["oncall@example.org"],
                    "ca_file": str(cert),
                },
            },
        )
        assert created.status_code == 201, created.text
        sent = await guard.client.post(f"/api/v1/channels/{created.json()['id']}/test", headers=admin)
        assert sent.status_code == 200, sent.text
        assert sent.json()["delivered"] is True, sent.json()
    assert internal.messages == []
    assert allowed.messages == ["guard@example.org"]
