"""Server-side request forgery guard for URLs the guard calls on someone's behalf (webhooks,
notification channels): only http(s), and no loopback / link-local / private / reserved
destination unless an admin allowlisted it.

Two layers:
- `check_url` / `check_url_async` validate a URL when it is configured (clear error for the API);
- `SafeResolver` + `guarded_socket_factory` re-check every address at connect time, so DNS
  rebinding, IP literals in redirects and decimal/hex IP spellings cannot slip past the first check.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_HOSTNAME_RE = re.compile(
    r"^(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$"
)
ALLOWED_SCHEMES = ("http", "https")
DEFAULT_RESOLVE_TIMEOUT_S = 5.0


class UnsafeURL(ValueError):
    """The URL or one of its resolved addresses is refused by the SSRF policy."""


class UnsafeConnection(UnsafeURL, OSError):
    """Raised at connect time. It is also an OSError so aiohttp wraps it as a connection error
    (ClientConnectorError) instead of letting it escape as an unexpected exception."""


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_refusal(ip: IPAddress) -> str | None:
    """Why `ip` is not a safe destination, or None when it is (ignoring any allowlist)."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            reason = address_refusal(inner)
            return f"embeds {inner} which is {reason}" if reason else None
    checks = (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_reserved", "reserved"),
        ("is_private", "private"),
    )
    for attr, label in checks:
        if getattr(ip, attr):
            return label
    if not ip.is_global:
        return "not globally routable"
    return None


def _parse_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return None


@dataclass(frozen=True)
class SSRFPolicy:
    """Admin allowlist: CIDRs ("10.0.0.0/8", "127.0.0.1/32", "::1/128") and host names
    ("hooks.internal.example", or "*.internal.example" for any subdomain)."""

    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    hostnames: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_allow(cls, allow: Iterable[str] | None) -> SSRFPolicy:
        networks = []
        hostnames = set()
        for entry in allow or ():
            text = str(entry).strip().lower()
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
                continue
            except ValueError:
                pass
            name = text.rstrip(".")
            if not _HOSTNAME_RE.match(name):
                raise ValueError(f"ssrf allowlist entry {entry!r} is neither a CIDR nor a host name")
            hostnames.add(name)
        return cls(tuple(networks), frozenset(hostnames))

    def host_allowed(self, host: str) -> bool:
        name = host.lower().rstrip(".")
        if name in self.hostnames:
            return True
        return any(p.startswith("*.") and name.endswith(p[1:]) for p in self.hostnames)

    def ip_allowed(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.networks)

    def refusal(self, ip: IPAddress) -> str | None:
        if self.ip_allowed(ip):
            return None
        return address_refusal(ip)


def _split_checked(url: str) -> tuple[str, int, str]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"invalid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        shown = scheme or "(none)"
        raise UnsafeURL(f"scheme {shown!r} is not allowed (only http and https)")
    host = parts.hostname
    if not host:
        raise UnsafeURL("URL has no host")
    return host, port or (443 if scheme == "https" else 80), scheme


def _check_addresses(host: str, addresses: Iterable[str], policy: SSRFPolicy) -> None:
    seen = False
    for text in addresses:
        ip = _parse_ip(text)
        if ip is None:
            continue
        seen = True
        reason = policy.refusal(ip)
        if reason:
            suffix = "" if text == host else f" (resolved from {host!r})"
            raise UnsafeURL(f"destination {ip} is {reason}{suffix}; not in the SSRF allowlist")
    if not seen:
        raise UnsafeURL(f"host {host!r} resolved to no usable address")


def _policy(allow: Iterable[str] | SSRFPolicy | None) -> SSRFPolicy:
    return allow if isinstance(allow, SSRFPolicy) else SSRFPolicy.from_allow(allow)


def check_url(url: str, allow: Iterable[str] | SSRFPolicy | None = ()) -> None:
    """Raise UnsafeURL unless `url` is http(s) and every address its host resolves to is safe or
    allowlisted. Blocking DNS lookup: for config validation and CLI; use check_url_async in the
    event loop."""
    policy = _policy(allow)
    host, port, _ = _split_checked(url)
    if policy.host_allowed(host):
        return
    if (ip := _parse_ip(host)) is not None:
        _check_addresses(host, [str(ip)], policy)
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnsafeURL(f"cannot resolve host {host!r}: {exc}") from None
    _check_addresses(host, [str(info[4][0]) for info in infos], policy)


async def _resolve_async(host: str, port: int, timeout: float) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise UnsafeURL(f"cannot resolve host {host!r}: timeout after {timeout:g}s") from None
    except (OSError, UnicodeError) as exc:
        raise UnsafeURL(f"cannot resolve host {host!r}: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def check_url_async(
    url: str,
    allow: Iterable[str] | SSRFPolicy | None = (),
    *,
    timeout: float = DEFAULT_RESOLVE_TIMEOUT_S,
) -> None:
    """Like check_url, resolving with loop.getaddrinfo under a timeout."""
    policy = _policy(allow)
    host, port, _ = _split_checked(url)
    if policy.host_allowed(host):
        return
    if (ip := _parse_ip(host)) is not None:
        _check_addresses(host, [str(ip)], policy)
        return
    _check_addresses(host, await _resolve_async(host, port, timeout), policy)


async def checked_addresses(
    host: str,
    port: int,
    allow: Iterable[str] | SSRFPolicy | None = (),
    *,
    timeout: float = DEFAULT_RESOLVE_TIMEOUT_S,
) -> list[str]:
    """The addresses to connect to for ``host``, resolved once and checked like ``check_url_async``
    (UnsafeURL when one is unsafe). For a client that resolves by itself (smtplib): connect to these,
    never to the name again — a second lookup may answer something else (DNS rebinding)."""
    policy = _policy(allow)
    ip = _parse_ip(host)
    addresses = [str(ip)] if ip is not None else await _resolve_async(host, port, timeout)
    if not policy.host_allowed(host):
        _check_addresses(host, addresses, policy)
    return addresses


def redact_url(url: str, *, keep_path: bool = True) -> str:
    """URL safe for logs: userinfo and query values masked. Pass keep_path=False for URLs whose
    path is the secret (Slack incoming webhooks). Never raises."""
    try:
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if parts.port is not None:
            netloc = f"{netloc}:{parts.port}"
        if parts.username is not None or parts.password is not None:
            netloc = f"***@{netloc}"
        query = "&".join(
            f"{quote(k, safe='')}=***" for k, _ in parse_qsl(parts.query, keep_blank_values=True)
        )
        path = parts.path if keep_path else ("/***" if parts.path not in ("", "/") else parts.path)
        return urlunsplit((parts.scheme, netloc, path, query, ""))
    except ValueError:
        return "<unparsable url>"


class SafeResolver(AbstractResolver):
    """aiohttp resolver that drops unsafe addresses (per `policy`) from every lookup and fails
    the connection when none is left. Host names on the allowlist resolve unfiltered; their
    addresses are remembered so `guarded_socket_factory` lets them through."""

    def __init__(self, policy: SSRFPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner if inner is not None else DefaultResolver()
        # Bounded: addresses of allowlisted host names, trusted by the socket factory.
        self.trusted: set[str] = set()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if self.policy.host_allowed(host):
            if len(self.trusted) > 4096:
                self.trusted.clear()
            self.trusted.update(r["host"] for r in results)
            return results
        safe = []
        reasons = []
        for r in results:
            ip = _parse_ip(r["host"])
            reason = "unparsable address" if ip is None else self.policy.refusal(ip)
            if reason:
                reasons.append(f"{r['host']} is {reason}")
            else:
                safe.append(r)
        if not safe:
            raise UnsafeConnection(
                f"refused by SSRF policy: {host!r} resolves only to unsafe addresses "
                f"({'; '.join(reasons[:3])})"
            )
        return safe

    async def close(self) -> None:
        await self._inner.close()


def guarded_socket_factory(
    policy: SSRFPolicy, resolver: SafeResolver | None = None
) -> Callable[[tuple], socket.socket]:
    """aiohttp `socket_factory`: the last check before connect(). aiohttp skips the resolver for
    IP literals (including redirect targets), so this is what stops http://169.254.169.254/."""

    def factory(addr_info: tuple) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        host = sockaddr[0]
        ip = _parse_ip(host)
        trusted = resolver is not None and host in resolver.trusted
        reason = None if trusted else ("unparsable address" if ip is None else policy.refusal(ip))
        if reason:
            raise UnsafeConnection(f"refused by SSRF policy: destination {host} is {reason}")
        return socket.socket(family=family, type=type_, proto=proto)

    return factory
