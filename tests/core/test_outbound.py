from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from app.outbound.http import bounded_request, make_session, parse_retry_after


async def test_429_with_retry_after_seconds_and_date(http_target):
    async with make_session(ssrf_allow=["127.0.0.1/32"]) as session:
        resp = await bounded_request(session, "GET", http_target.url("/429"), timeout=3)
        assert resp.status == 429 and resp.error is None and not resp.ok
        assert resp.retry_after_s == 7.0
        when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
        dated = await bounded_request(session, "GET", http_target.url(f"/429?ra={when}"), timeout=3)
        assert dated.retry_after_s is not None and 100 < dated.retry_after_s <= 121


def test_parse_retry_after():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 00:01:00 GMT", now=now) == 60.0
    assert parse_retry_after("Wed, 31 Dec 2025 00:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


async def test_body_is_capped(http_target):
    async with make_session() as session:
        resp = await bounded_request(
            session, "GET", http_target.url("/huge"), timeout=5, max_response_bytes=1000
        )
    assert resp.error is None and resp.status == 200
    assert len(resp.body) == 1000 and resp.truncated


async def test_timeout_is_an_error_string(http_target):
    async with make_session() as session:
        resp = await bounded_request(session, "GET", http_target.url("/hang"), timeout=0.3)
    assert resp.status is None and resp.error == "timeout after 0.3s"
    assert 0.25 < resp.latency_s < 2


async def test_json_body_round_trip(http_target):
    async with make_session() as session:
        resp = await bounded_request(session, "POST", http_target.url("/echo"), json_body={"a": 1}, timeout=3)
    assert resp.ok and resp.body == b'{"got": {"a": 1}}'


async def test_ssrf_session_refuses_loopback_unless_allowlisted(http_target):
    async with make_session(ssrf_allow=[]) as session:
        literal = await bounded_request(session, "GET", http_target.url("/429"), timeout=3)
        named = await bounded_request(session, "GET", f"http://localhost:{http_target.port}/429", timeout=3)
    assert literal.status is None and "refused by SSRF policy" in literal.error
    assert "127.0.0.1 is loopback" in literal.error
    assert named.status is None and "refused by SSRF policy" in named.error


async def test_redirect_to_metadata_refused_at_connect_time(http_target):
    async with make_session(ssrf_allow=["127.0.0.1/32"]) as session:
        resp = await bounded_request(session, "GET", http_target.url("/redirect-metadata"), timeout=3)
    assert resp.error is not None and "169.254.169.254 is link-local" in resp.error


async def test_redirects_bounded(http_target):
    async with make_session() as session:
        resp = await bounded_request(session, "GET", http_target.url("/loop"), timeout=3, max_redirects=2)
        no_follow = await bounded_request(
            session, "GET", http_target.url("/loop"), timeout=3, max_redirects=0
        )
    assert resp.error == "too many redirects (more than 2)"
    assert no_follow.status == 302 and no_follow.error is None


async def test_connection_refused_and_credentials_not_leaked(closed_port):
    async with make_session() as session:
        resp = await bounded_request(
            session, "GET", f"http://user:hunter2@127.0.0.1:{closed_port}/x?t=s3", timeout=3
        )
    assert resp.status is None and "cannot connect to 127.0.0.1" in resp.error
    assert "hunter2" not in resp.error and "s3" not in resp.error


async def test_allowlisted_hostname_connects(http_target):
    async with make_session(ssrf_allow=["localhost"]) as session:
        resp = await bounded_request(session, "GET", f"http://localhost:{http_target.port}/429", timeout=3)
    assert resp.status == 429 and resp.error is None
