"""Rate limits and the login throttle count an IPv6 client by its /64, an IPv4 client by its address.

Keyed on the exact address, one IPv6 subscriber (who is handed a /64 and picks any interface id in
it) could send each request from a fresh address: no rate limit and no login lockout would ever
trip. Against ``pipeline-guard serve`` on loopback behind a trusted proxy (127.0.0.1, as for a
sidecar) that names the client in X-Forwarded-For, the way an IPv6 client reaches a deployed guard.
"""

from __future__ import annotations

import httpx

from app.api.ratelimit import rate_key
from tests.conftest import TEST_PASSWORD
from tests.security.serve_process import ADMIN, guard_process

CONFIG = (
    "security:\n"
    "  trusted_proxies: [127.0.0.1/32]\n"
    "  login_max_failures: 2\n"
    "  login_global_max_failures: 50\n"
    "  rate_limiting: {enabled: true, default: 4/minute}\n"
)


def _from(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


def test_one_ipv6_subscriber_cannot_rotate_past_limits_or_the_login_lockout(db_url, tmp_path):
    with guard_process(db_url, tmp_path, CONFIG) as base, httpx.Client(base_url=base, timeout=10) as client:
        # Rate limit: a fresh address of the same /64 for every request.
        statuses = [
            client.get("/api/v1/auth/me", headers=_from(f"2001:db8:1:2::{i + 1:x}")).status_code
            for i in range(6)
        ]
        assert statuses == [401, 401, 401, 401, 429, 429]
        # The next /64 is another subscriber, with its own budget; so is every IPv4 address.
        assert client.get("/api/v1/auth/me", headers=_from("2001:db8:1:3::1")).status_code == 401
        assert [
            client.get("/api/v1/auth/me", headers=_from(f"198.51.100.{i + 1}")).status_code for i in range(6)
        ] == [401] * 6

        # Login lockout: two wrong passwords from two addresses of one /64 lock the account for the
        # whole /64, even with the right password from a third address.
        for host in ("a", "b"):
            wrong = client.post(
                "/api/v1/auth/token",
                data={"username": ADMIN, "password": "not-the-password"},
                headers=_from(f"2001:db8:5:6::{host}"),
            )
            assert wrong.status_code == 401
        locked = client.post(
            "/api/v1/auth/token",
            data={"username": ADMIN, "password": TEST_PASSWORD},
            headers=_from("2001:db8:5:6:ffff:ffff:ffff:ffff"),
        )
        assert locked.status_code == 401, locked.text
        # Someone elsewhere (another /64) still logs in.
        elsewhere = client.post(
            "/api/v1/auth/token",
            data={"username": ADMIN, "password": TEST_PASSWORD},
            headers=_from("2001:db8:5:7::a"),
        )
        assert elsewhere.status_code == 200, elsewhere.text


def test_the_key_of_each_kind_of_address():
    assert rate_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd") == "2001:db8:1:2::/64"
    assert rate_key("2001:DB8:1:2::1") == rate_key("2001:db8:1:2::2")
    assert rate_key("::1") == "::/64"
    assert rate_key("fe80::1%eth0") == "fe80::/64"
    assert rate_key("203.0.113.7") == "203.0.113.7"
    assert rate_key("::ffff:203.0.113.7") == "203.0.113.7"  # an IPv4 peer on a dual-stack listener
    assert rate_key("unknown") == "unknown"
