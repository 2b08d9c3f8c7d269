from __future__ import annotations

import ipaddress
import socket

import pytest

from app.outbound.ssrf import (
    SafeResolver,
    SSRFPolicy,
    UnsafeURL,
    address_refusal,
    check_url,
    check_url_async,
    guarded_socket_factory,
    redact_url,
)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://127.0.0.1:8080/", "loopback"),
        ("http://10.1.2.3/", "private"),
        ("http://172.16.0.1/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://[::1]/", "loopback"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[fc00::1]/", "private"),
        ("http://[::ffff:127.0.0.1]/", "embeds 127.0.0.1"),
        ("http://[::ffff:169.254.169.254]/", "embeds 169.254.169.254"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
        ("http://localhost:9000/", "resolved from 'localhost'"),
        ("http://2130706433/", "loopback"),  # decimal spelling of 127.0.0.1
    ],
)
def test_unsafe_destinations_refused(url, reason):
    with pytest.raises(UnsafeURL, match="not in the SSRF allowlist") as info:
        check_url(url, [])
    assert reason in str(info.value)


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "gopher://x/", "//x/"])
def test_non_http_schemes_refused(url):
    with pytest.raises(UnsafeURL, match="only http and https"):
        check_url(url, [])


def test_allowlisted_cidr_and_hostname_accepted():
    check_url("http://127.0.0.1:8080/hook", ["127.0.0.1/32"])
    check_url("http://10.9.8.7/", ["10.0.0.0/8"])
    check_url("http://[::1]/", ["::1/128"])
    check_url("https://hooks.internal.example/x", ["hooks.internal.example"])  # trusted by name, no DNS
    check_url("https://a.b.internal.example/x", ["*.internal.example"])
    with pytest.raises(UnsafeURL):
        check_url("http://127.0.0.2/", ["127.0.0.1/32"])


def test_public_address_accepted():
    check_url("https://93.184.215.14/", [])
    check_url("https://[2606:4700::1111]/", [])


async def test_async_variant_resolves_hostnames():
    with pytest.raises(UnsafeURL, match="loopback"):
        await check_url_async("http://localhost/", [])
    await check_url_async("http://localhost/", ["127.0.0.0/8", "::1/128"])
    with pytest.raises(UnsafeURL, match="only http and https"):
        await check_url_async("ftp://localhost/", [])


def test_bad_allowlist_entry():
    with pytest.raises(ValueError, match="neither a CIDR nor a host name"):
        SSRFPolicy.from_allow(["not a host!"])


def test_address_refusal_embedded_ipv4():
    assert address_refusal(ipaddress.ip_address("2002:7f00:1::")) is not None  # 6to4 of 127.0.0.1
    assert address_refusal(ipaddress.ip_address("64:ff9b::a9fe:a9fe")) is not None  # NAT64 169.254.169.254
    assert address_refusal(ipaddress.ip_address("100.64.0.1")) == "not globally routable"
    assert address_refusal(ipaddress.ip_address("8.8.8.8")) is None


def test_redact_url():
    assert redact_url("https://user:pa55@hooks.example.com:8443/p/a?token=abc&x=1#frag") == (
        "https://***@hooks.example.com:8443/p/a?token=***&x=***"
    )
    assert redact_url("https://hooks.slack.com/services/T0/B0/SECRET", keep_path=False) == (
        "https://hooks.slack.com/***"
    )
    assert redact_url("http://[::1]:80/") == "http://[::1]:80/"
    assert "SECRET" not in redact_url("http://x:SECRET@[bad")


async def test_safe_resolver_filters_and_trusts_allowlisted_names():
    policy = SSRFPolicy.from_allow(["localhost"])
    resolver = SafeResolver(SSRFPolicy.from_allow([]))
    try:
        with pytest.raises(OSError, match="refused by SSRF policy"):
            await resolver.resolve("localhost", 80, socket.AF_INET)
    finally:
        await resolver.close()
    trusting = SafeResolver(policy)
    try:
        results = await trusting.resolve("localhost", 80, socket.AF_INET)
        assert results and "127.0.0.1" in trusting.trusted
    finally:
        await trusting.close()


def test_socket_factory_refuses_literal_addresses():
    factory = guarded_socket_factory(SSRFPolicy.from_allow([]))
    with pytest.raises(OSError, match="169.254.169.254 is link-local"):
        factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 80)))
    allowed = guarded_socket_factory(SSRFPolicy.from_allow(["127.0.0.1/32"]))
    sock = allowed((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80)))
    sock.close()
