"""Behind a trusted proxy that adds its own X-Forwarded-For line (HAProxy's ``option forwardfor``)
instead of appending to the client's, a client cannot pick its rate-limit key by sending a line of
its own first: every line counts, in order, and the rightmost untrusted address is the client.

Against ``pipeline-guard serve`` on loopback (the trusted proxy is 127.0.0.1, as for a sidecar).
Note: uvicorn's own proxy-header handling (on by default, off in ``serve``) would hide the defect."""

from __future__ import annotations

import httpx

from app.api.ratelimit import TrustedProxies, client_address
from tests.security.serve_process import guard_process

REAL_CLIENT = "198.51.100.9"


def test_a_spoofed_first_line_does_not_reset_the_budget(db_url, tmp_path):
    config = (
        "security:\n  trusted_proxies: [127.0.0.1/32]\n  rate_limiting: {enabled: true, default: 3/minute}\n"
    )
    with guard_process(db_url, tmp_path, config) as base, httpx.Client(base_url=base, timeout=10) as client:
        statuses = []
        for i in range(5):
            headers = [
                ("X-Forwarded-For", f"203.0.113.{i + 1}"),  # what the client made up
                ("X-Forwarded-For", REAL_CLIENT),  # what the proxy saw
            ]
            statuses.append(client.get("/api/v1/auth/me", headers=headers).status_code)
        assert statuses == [401, 401, 401, 429, 429]
        # Another real client behind the same proxy keeps its own budget.
        other = client.get("/api/v1/auth/me", headers=[("X-Forwarded-For", "198.51.100.10")])
        assert other.status_code == 401


def test_every_forwarded_line_counts_in_order():
    proxies = TrustedProxies(["10.0.0.0/8"])
    scope = {
        "type": "http",
        "client": ("10.0.0.2", 1234),
        "headers": [
            (b"x-forwarded-for", b"6.6.6.6, 7.7.7.7"),
            (b"accept", b"*/*"),
            (b"x-forwarded-for", REAL_CLIENT.encode() + b", 10.0.0.1"),
        ],
    }
    assert client_address(scope, proxies) == REAL_CLIENT


def test_an_ipv4_proxy_seen_through_a_dual_stack_listener_is_trusted():
    proxies = TrustedProxies(["10.0.0.0/8", "2001:db8::/32"])
    for peer in ("::ffff:10.0.0.2", "10.0.0.2", "2001:db8::7"):
        scope = {
            "type": "http",
            "client": (peer, 1234),
            "headers": [(b"x-forwarded-for", REAL_CLIENT.encode())],
        }
        assert client_address(scope, proxies) == REAL_CLIENT, peer
    outside = {
        "type": "http",
        "client": ("::ffff:203.0.113.5", 1),
        "headers": [(b"x-forwarded-for", b"1.2.3.4")],
    }
    assert client_address(outside, proxies) == "::ffff:203.0.113.5"
