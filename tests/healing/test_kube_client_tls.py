"""The client over real TLS on 127.0.0.1: the in-cluster CA is verified, a wrong CA is refused, and
kubeconfig client certificates (inline data) are presented. kmock serves HTTPS through a small
RawTestServer subclass that starts its site with an SSL context."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import aiohttp.test_utils
import kmock as kmock_lib
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from app.healing.strategies.base import ActionContext
from app.healing.strategies.kubernetes import KubernetesStrategy
from app.outbound.kube import KubeClient, load_incluster, load_kubeconfig

DEPLOY = "/apis/apps/v1/namespaces/ml/deployments/trainer"


def _cert(subject: str, issuer_key, issuer_name, key, *, ca: bool, usage=None, ip: str | None = None):
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(obj) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path | bytes]:
    out = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test-ca", ca_key, None, ca_key, ca=True)
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv = _cert(
        "apiserver",
        ca_key,
        ca.subject,
        srv_key,
        ca=False,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        ip="127.0.0.1",
    )
    cli_key = ec.generate_private_key(ec.SECP256R1())
    cli = _cert("guard", ca_key, ca.subject, cli_key, ca=False, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_ca = _cert("other-ca", other_key, None, other_key, ca=True)
    files = {"ca": _pem(ca), "srv": _pem(srv), "srv_key": _pem(srv_key), "other_ca": _pem(other_ca)}
    paths = {}
    for name, data in files.items():
        (out / f"{name}.pem").write_bytes(data)
        paths[name] = out / f"{name}.pem"
    return {**paths, "cli_cert": _pem(cli), "cli_key": _pem(cli_key)}


@pytest.fixture
async def tls_kmock(pki):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki["srv"], pki["srv_key"])
    ctx.load_verify_locations(pki["ca"])
    ctx.verify_mode = ssl.CERT_OPTIONAL  # client certs checked when presented

    class TLSServer(aiohttp.test_utils.RawTestServer):
        async def start_server(self, loop=None, **kwargs):
            return await super().start_server(loop=loop, ssl=ctx, **kwargs)

    async with (
        kmock_lib.KubernetesEmulator() as handler,
        kmock_lib.Server(handler, server_cls=TLSServer) as srv,
    ):
        handler.objects[handler.resource("apps/v1/deployments"), "ml", "trainer"] = {
            "metadata": {"name": "trainer"}
        }
        yield handler, srv


def _sa_dir(tmp_path: Path, ca: Path) -> Path:
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("sa-token")
    (sa / "namespace").write_text("ml")
    (sa / "ca.crt").write_bytes(ca.read_bytes())
    return sa


async def test_incluster_verifies_the_apiserver_with_the_service_account_ca(tls_kmock, pki, tmp_path):
    handler, srv = tls_kmock
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(srv.port)}
    config = load_incluster(sa_dir=_sa_dir(tmp_path, pki["ca"]), environ=env)
    strategy = KubernetesStrategy(lambda params: KubeClient(config, timeout_s=5))
    params = strategy.validate({"action": "rollout_restart", "namespace": "ml", "name": "trainer"})
    ctx = ActionContext("trainer", {}, "inc-1", 1, 1, params)

    result = await strategy.execute(ctx)

    assert result.success, result.detail
    assert [(r.method.value, r.url.path) for r in handler] == [("GET", DEPLOY), ("PATCH", DEPLOY)]
    assert {r.headers["Authorization"] for r in handler} == {"Bearer sa-token"}


async def test_an_apiserver_signed_by_another_ca_is_refused(tls_kmock, pki, tmp_path):
    handler, srv = tls_kmock
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(srv.port)}
    config = load_incluster(sa_dir=_sa_dir(tmp_path, pki["other_ca"]), environ=env)
    strategy = KubernetesStrategy(lambda params: KubeClient(config, timeout_s=5))
    params = strategy.validate({"action": "rollout_restart", "namespace": "ml", "name": "trainer"})

    result = await strategy.execute(ActionContext("trainer", {}, "inc-1", 1, 1, params))

    assert not result.success
    assert "ConnectionError" in result.detail and "certificate" in result.detail.lower()
    assert list(handler) == []  # the token never left the client


async def test_kubeconfig_inline_ca_and_client_certificate(tls_kmock, pki, tmp_path):
    handler, srv = tls_kmock

    def b64(data):
        return base64.b64encode(data).decode()

    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "current-context": "c",
                "clusters": [
                    {
                        "name": "k",
                        "cluster": {
                            "server": f"https://127.0.0.1:{srv.port}",
                            "certificate-authority-data": b64(pki["ca"].read_bytes()),
                        },
                    }
                ],
                "users": [
                    {
                        "name": "u",
                        "user": {
                            "client-certificate-data": b64(pki["cli_cert"]),
                            "client-key-data": b64(pki["cli_key"]),
                        },
                    }
                ],
                "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
            }
        )
    )

    # Answer with the TLS peer's certificate subject, read while the connection is still open.
    def peer_subject(request):
        peer = request._raw_request.transport.get_extra_info("peercert") or {}
        return {"subject": dict(item[0] for item in peer.get("subject", ()))}

    handler[f"get {DEPLOY}"] << peer_subject
    async with KubeClient(load_kubeconfig(kubeconfig), timeout_s=5) as kube:
        answer = await kube.get(DEPLOY)

    assert answer == {"subject": {"commonName": "guard"}}
    (request,) = list(handler)
    assert "Authorization" not in request.headers
