"""Where and how to reach the Kubernetes API: in-cluster service account or a kubeconfig file.

Only the subset the guard needs: server URL, bearer token (inline or a file that is re-read because
bound service-account tokens rotate), client certificate, CA, insecure-skip-tls-verify. Exec and
auth-provider plugins are refused with a clear message rather than half-supported.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from app.security.safe_yaml import load_yaml

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# A kubeconfig or a token is a few KiB; anything much larger is not what we think it is.
MAX_CONFIG_FILE_BYTES = 1024 * 1024


class KubeConfigError(ValueError):
    """The Kubernetes connection settings are missing or unusable."""


@dataclass(frozen=True, repr=False)
class KubeConfig:
    server: str
    token: str | None = None
    token_file: str | None = None
    ca_file: str | None = None
    ca_data: bytes | None = None  # PEM
    client_cert_file: str | None = None
    client_cert_data: bytes | None = None  # PEM
    client_key_file: str | None = None
    client_key_data: bytes | None = None  # PEM
    insecure_skip_tls_verify: bool = False
    namespace: str = "default"

    def __repr__(self) -> str:  # never let a token or key reach a log line through repr()
        return f"KubeConfig(server={self.server!r}, namespace={self.namespace!r})"

    def ssl_context(self) -> ssl.SSLContext | bool | None:
        """What aiohttp's ``ssl=`` argument needs: None for plain http, False to skip verification."""
        if not self.server.startswith("https://"):
            return None
        if self.insecure_skip_tls_verify:
            return False
        ctx = ssl.create_default_context(
            cafile=self.ca_file, cadata=self.ca_data.decode() if self.ca_data else None
        )
        if self.client_cert_file or self.client_cert_data:
            _load_client_cert(ctx, self)
        return ctx


def _load_client_cert(ctx: ssl.SSLContext, cfg: KubeConfig) -> None:
    # ssl only loads certificates from files, so inline data goes through a private temp dir that
    # is removed at once; the key never outlives this call on disk.
    if cfg.client_cert_file and cfg.client_key_file:
        ctx.load_cert_chain(cfg.client_cert_file, cfg.client_key_file)
        return
    with tempfile.TemporaryDirectory(prefix="pg-kube-") as tmp:
        cert = cfg.client_cert_file or _write_private(Path(tmp, "cert.pem"), cfg.client_cert_data)
        key = cfg.client_key_file or _write_private(Path(tmp, "key.pem"), cfg.client_key_data)
        if key is None:
            raise KubeConfigError("client certificate given without a client key")
        if cert is None:  # the caller loads only when a certificate is given
            raise KubeConfigError("client key given without a client certificate")
        ctx.load_cert_chain(cert, key)


def _write_private(path: Path, data: bytes | None) -> str | None:
    if data is None:
        return None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return str(path)


def read_small_file(path: str | Path) -> bytes:
    with open(path, "rb") as fh:
        data = fh.read(MAX_CONFIG_FILE_BYTES + 1)
    if len(data) > MAX_CONFIG_FILE_BYTES:
        raise KubeConfigError(f"{path}: larger than {MAX_CONFIG_FILE_BYTES} bytes")
    return data


def load_incluster(
    sa_dir: str | Path = SERVICE_ACCOUNT_DIR, environ: Mapping[str, str] | None = None
) -> KubeConfig:
    """The pod's service account, as client-go's rest.InClusterConfig does it."""
    env = os.environ if environ is None else environ
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise KubeConfigError("not in a cluster: KUBERNETES_SERVICE_HOST/PORT are not set")
    sa = Path(sa_dir)
    token_file = sa / "token"
    if not token_file.is_file():
        raise KubeConfigError(f"service account token not found at {token_file}")
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    ca_file = sa / "ca.crt"
    ns_file = sa / "namespace"
    namespace = read_small_file(ns_file).decode().strip() if ns_file.is_file() else "default"
    return KubeConfig(
        server=f"https://{host}:{port}",
        token_file=str(token_file),
        ca_file=str(ca_file) if ca_file.is_file() else None,
        namespace=namespace or "default",
    )


def load_kubeconfig(path: str | Path | None = None, context: str | None = None) -> KubeConfig:
    """A kubeconfig file (default ``$KUBECONFIG`` or ``~/.kube/config``), current or named context."""
    if path is None:
        # Only the first entry of a KUBECONFIG list: merging files is more than the guard needs.
        path = (os.environ.get("KUBECONFIG") or "~/.kube/config").split(os.pathsep)[0]
    path = Path(path).expanduser()
    try:
        doc = load_yaml(read_small_file(path)) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise KubeConfigError(f"cannot read kubeconfig {path}: {type(exc).__name__}") from None
    base = path.parent
    ctx_name = context or doc.get("current-context")
    if not ctx_name:
        raise KubeConfigError(f"{path}: no context given and no current-context")
    ctx = _named(doc, "contexts", ctx_name, "context", path)
    cluster = _named(doc, "clusters", ctx.get("cluster"), "cluster", path)
    user = _named(doc, "users", ctx.get("user"), "user", path) if ctx.get("user") else {}
    if "exec" in user or "auth-provider" in user:
        raise KubeConfigError(f"{path}: user {ctx.get('user')!r} uses exec/auth-provider, not supported")
    server = cluster.get("server")
    if not server:
        raise KubeConfigError(f"{path}: cluster {ctx.get('cluster')!r} has no server")
    return KubeConfig(
        server=str(server).rstrip("/"),
        token=user.get("token"),
        token_file=_rel(base, user.get("tokenFile")),
        ca_file=_rel(base, cluster.get("certificate-authority")),
        ca_data=_b64(cluster.get("certificate-authority-data")),
        client_cert_file=_rel(base, user.get("client-certificate")),
        client_cert_data=_b64(user.get("client-certificate-data")),
        client_key_file=_rel(base, user.get("client-key")),
        client_key_data=_b64(user.get("client-key-data")),
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
        namespace=ctx.get("namespace") or "default",
    )


def _named(doc: dict[str, Any], section: str, name: Any, key: str, path: Path) -> dict[str, Any]:
    for entry in doc.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry.get(key) or {}
    raise KubeConfigError(f"{path}: {section[:-1]} {name!r} not found")


def _rel(base: Path, value: str | None) -> str | None:
    # kubectl resolves relative paths against the kubeconfig's own directory, not the cwd.
    if not value:
        return None
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else base / p)


def _b64(value: str | None) -> bytes | None:
    return base64.b64decode(value) if value else None
