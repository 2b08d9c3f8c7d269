"""Insecure settings, found by reading a Settings (pure: no I/O). The seed's SecurityScanner, applied
to what we own. ``pipeline-guard config audit`` prints them; the exit code is the worst severity.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from app.config.settings import Settings, secret_key_problem
from app.security.check_secrets import display_url

SEVERITIES = ("low", "medium", "high", "critical")
# Exit code of `config audit` by the worst finding: none/low 0, medium 1, high 2, critical 3.
EXIT_CODES = {None: 0, "low": 0, "medium": 1, "high": 2, "critical": 3}
PRIVATE_RANGES = [
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
]


def _within(
    inner: ipaddress.IPv4Network | ipaddress.IPv6Network, outer: ipaddress.IPv4Network | ipaddress.IPv6Network
) -> bool:
    """``inner`` lies inside ``outer`` (never across IP versions, where ``subnet_of`` raises)."""
    if isinstance(inner, ipaddress.IPv4Network) and isinstance(outer, ipaddress.IPv4Network):
        return inner.subnet_of(outer)
    if isinstance(inner, ipaddress.IPv6Network) and isinstance(outer, ipaddress.IPv6Network):
        return inner.subnet_of(outer)
    return False


@dataclass(frozen=True)
class Finding:
    severity: str
    path: str
    problem: str
    fix: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def worst(findings: list[Finding]) -> str | None:
    return max((f.severity for f in findings), key=SEVERITIES.index, default=None)


def exit_code(findings: list[Finding]) -> int:
    return EXIT_CODES[worst(findings)]


def _is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _urls(node: Any, path: str):
    """Every (path, url) string in a nested dict/list that looks like an http(s) URL."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _urls(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _urls(value, f"{path}[{index}]")
    elif isinstance(node, str) and node.lower().startswith(("http://", "https://")):
        yield path, node


def _secret_findings(settings: Settings) -> list[Finding]:
    secret = settings.security.secret_key.get_secret_value() if settings.security.secret_key else None
    problem = secret_key_problem(secret)
    if problem is None:
        return []
    fix = (
        "set PIPELINE_SECRET_KEY to a random value: "
        "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
    )
    if secret is None:
        severity = "critical" if settings.env == "production" else "medium"
        return [
            Finding(
                severity, "security.secret_key", problem + " (development generates one under data_dir)", fix
            )
        ]
    return [Finding("critical", "security.secret_key", problem, fix)]


def _network_findings(settings: Settings) -> list[Finding]:
    findings = []
    for index, entry in enumerate(settings.security.ssrf_allowlist):
        path = f"security.ssrf_allowlist[{index}]"
        try:
            network = ipaddress.ip_network(entry.strip(), strict=False)
        except ValueError:
            continue  # host names are fine
        if network.prefixlen == 0:
            findings.append(
                Finding(
                    "high",
                    path,
                    f"{entry} allows outbound calls to any address, including the "
                    "cloud metadata service and internal hosts",
                    "list only the hosts or small networks webhooks and checks must reach",
                )
            )
        elif any(network == private or _within(private, network) for private in PRIVATE_RANGES):
            findings.append(
                Finding(
                    "high",
                    path,
                    f"{entry} opens a whole private address range to outbound calls",
                    "narrow it to the subnets you need (e.g. a /24)",
                )
            )
        elif network.is_private and network.prefixlen <= (8 if network.version == 4 else 32):
            findings.append(
                Finding(
                    "medium",
                    path,
                    f"{entry} is a very wide private range for outbound calls",
                    "narrow it to the subnets you need",
                )
            )
        elif network.prefixlen <= (8 if network.version == 4 else 32):
            findings.append(
                Finding(
                    "medium",
                    path,
                    f"{entry} is a very wide range for outbound calls",
                    "narrow it to the hosts you need",
                )
            )
    for index, proxy in enumerate(settings.security.trusted_proxies):
        if proxy.strip() in {"*", "0.0.0.0/0", "::/0"}:
            findings.append(
                Finding(
                    "high",
                    f"security.trusted_proxies[{index}]",
                    f"{proxy!r} trusts X-Forwarded-For from anyone: any client can pick its rate-limit "
                    "key and the address in the audit log",
                    "list your load balancers' addresses only",
                )
            )
    return findings


def _url_findings(settings: Settings) -> list[Finding]:
    findings = []
    for index, component in enumerate(settings.components):
        base = f"components[{index}]"
        sources = [(f"{base}.recovery", component.recovery or {}), (f"{base}.check", component.check or {})]
        for section, tree in sources:
            for path, url in _urls(tree, section):
                parts = urlsplit(url)
                if parts.scheme != "http" or _is_loopback_host(parts.hostname):
                    continue
                if section.endswith(".recovery"):
                    findings.append(
                        Finding(
                            "medium",
                            path,
                            f"webhook over plain http ({display_url(url)}): the request and its "
                            "credentials can be read or changed on the way",
                            "use https",
                        )
                    )
                else:
                    findings.append(
                        Finding(
                            "low",
                            path,
                            f"check over plain http to a non-loopback host ({display_url(url)})",
                            "use https where the target supports it",
                        )
                    )
    return findings


def audit_settings(settings: Settings) -> list[Finding]:
    """Every insecure setting with its severity and fix, worst first."""
    findings = _secret_findings(settings)
    security = settings.security
    if not security.enabled:
        findings.append(
            Finding(
                "critical",
                "security.enabled",
                "authentication is disabled: anyone who can reach "
                "the guard can change components and trigger healing",
                "remove PIPELINE_SECURITY_ENABLED=false (it is meant for local development only)",
            )
        )
    monitoring, healing = settings.pipeline.monitoring, settings.healing
    if monitoring.command_checks_enabled and not monitoring.command_allowlist:
        findings.append(
            Finding(
                "high",
                "pipeline.monitoring.command_allowlist",
                "command checks are enabled "
                "without an allowlist: anyone allowed to manage components can run any program",
                "list the allowed executables in pipeline.monitoring.command_allowlist",
            )
        )
    if healing.command_actions_enabled and not healing.command_allowlist:
        findings.append(
            Finding(
                "high",
                "healing.command_allowlist",
                "command recovery actions are enabled without "
                "an allowlist: any program can be run as the guard",
                "list the allowed executables in healing.command_allowlist",
            )
        )
    if not security.rate_limiting.enabled:
        findings.append(
            Finding(
                "medium",
                "security.rate_limiting.enabled",
                "rate limiting is off: logins and the API can be hammered",
                "enable security.rate_limiting (the default)",
            )
        )
    findings.extend(_network_findings(settings))
    findings.extend(_url_findings(settings))
    if settings.env == "production":
        if not security.encryption_key:
            findings.append(
                Finding(
                    "high",
                    "security.encryption_key",
                    "no encryption key in production: channel and webhook secrets are stored unencrypted",
                    "set PIPELINE_ENCRYPTION_KEY (a Fernet key; several comma-separated to rotate)",
                )
            )
        if security.docs_enabled:
            findings.append(
                Finding(
                    "low",
                    "security.docs_enabled",
                    "the API docs (/docs) are served in production",
                    "set PIPELINE_DOCS_ENABLED=false unless operators use them",
                )
            )
    return sorted(findings, key=lambda f: -SEVERITIES.index(f.severity))
