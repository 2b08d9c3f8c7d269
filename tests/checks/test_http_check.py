from __future__ import annotations

import asyncio
import time

import pytest

from app.checks.base import CheckConfigError, CheckContext, Outcome
from app.checks.http import HttpCheck, json_path_get
from app.outbound.http import make_session

check = HttpCheck()


async def run(params: dict, timeout: float = 3.0, session=None):
    return await check.run(params, CheckContext(timeout=timeout, http_session=session))


async def test_200_is_up(http_target):
    result = await run({"url": http_target.url("/ok")})
    assert result.outcome is Outcome.UP
    assert result.detail.startswith("HTTP 200")
    assert result.latency_s is not None and result.latency_s > 0
    assert result.observed_at.tzinfo is not None
    assert result.metrics["status_code"] == 200


async def test_500_is_down_and_secret_header_never_in_detail(http_target):
    params = {
        "url": http_target.url("/500"),
        "headers": {"Authorization": "Bearer sup3r-s3cret", "X-Token": "tok-123"},
        "secret_headers": ["X-Token"],
    }
    result = await run(params)
    assert result.outcome is Outcome.DOWN
    assert "HTTP 500" in result.detail and "200-399" in result.detail
    assert "sup3r-s3cret" not in result.detail and "tok-123" not in result.detail
    shown = check.redact(check.validate(params))
    assert shown["headers"] == {"Authorization": "***", "X-Token": "***"}


async def test_expected_status_accepts_500(http_target):
    result = await run({"url": http_target.url("/500"), "expected_status": [500, "200-204"]})
    assert result.outcome is Outcome.UP


async def test_slow_is_degraded(http_target):
    result = await run({"url": http_target.url("/slow?s=0.3"), "degraded_after_ms": 100})
    assert result.outcome is Outcome.DEGRADED
    assert "slow" in result.detail


async def test_slow_beyond_timeout_is_down(http_target):
    result = await run({"url": http_target.url("/slow?s=5")}, timeout=0.3)
    assert result.outcome is Outcome.DOWN
    assert result.detail == "timeout after 0.3s"


async def test_garbage_is_down_with_clear_detail(garbage_target):
    result = await run({"url": garbage_target.url("/")})
    assert result.outcome is Outcome.DOWN
    assert "invalid HTTP response" in result.detail or "disconnected" in result.detail


async def test_huge_body_reads_only_the_cap(http_target):
    params = {"url": http_target.url("/huge"), "body_contains": "needle", "max_body_kib": 16}
    started = time.monotonic()
    result = await run(params)
    assert time.monotonic() - started < 2.5
    assert result.outcome is Outcome.DOWN
    assert "only the first 16 KiB read" in result.detail


async def test_huge_body_status_only_is_up(http_target):
    result = await run({"url": http_target.url("/huge")})
    assert result.outcome is Outcome.UP


async def test_hanging_target_times_out_and_does_not_delay_a_fast_check(http_target):
    async with make_session() as session:  # shared, as the scheduler shares one

        async def timed(path):
            started = time.monotonic()
            result = await run({"url": http_target.url(path)}, timeout=1.5, session=session)
            return result, time.monotonic() - started

        (hang, hang_s), (fast, fast_s) = await asyncio.gather(timed("/hang"), timed("/ok"))
    assert hang.outcome is Outcome.DOWN and hang.detail == "timeout after 1.5s"
    assert 1.2 < hang_s < 4.0
    assert fast.outcome is Outcome.UP
    assert fast_s < 1.0  # generous; it would be >= 1.5 s if the hang blocked it


async def test_redirect_loop_is_bounded(http_target):
    result = await run({"url": http_target.url("/loop"), "max_redirects": 2})
    assert result.outcome is Outcome.DOWN
    assert "too many redirects" in result.detail


async def test_redirect_followed(http_target):
    result = await run({"url": http_target.url("/redirect-ok"), "body_contains": "nominal"})
    assert result.outcome is Outcome.UP


async def test_json_path_match_and_mismatch(http_target):
    url = http_target.url("/json")
    ok = await run({"url": url, "json_path": "data.items.0.status", "json_expected": "ok"})
    assert ok.outcome is Outcome.UP
    number = await run({"url": url, "json_path": "data.items.0.n", "json_expected": "3"})
    assert number.outcome is Outcome.UP
    boolean = await run({"url": url, "json_path": "ready", "json_expected": True})
    assert boolean.outcome is Outcome.UP
    wrong = await run({"url": url, "json_path": "data.items.0.status", "json_expected": "down"})
    assert wrong.outcome is Outcome.DOWN and 'got "ok"' in wrong.detail
    missing = await run({"url": url, "json_path": "data.items.5.status", "json_expected": "ok"})
    assert missing.outcome is Outcome.DOWN and "not found" in missing.detail


async def test_body_contains(http_target):
    assert (await run({"url": http_target.url("/ok"), "body_contains": "nominal"})).outcome is Outcome.UP
    assert (await run({"url": http_target.url("/ok"), "body_contains": "absent"})).outcome is Outcome.DOWN


async def test_closed_port_is_down(closed_port):
    result = await run({"url": f"http://127.0.0.1:{closed_port}/"})
    assert result.outcome is Outcome.DOWN
    assert "cannot connect" in result.detail


async def test_shared_session_from_context(http_target):
    async with make_session() as session:
        result = await run({"url": http_target.url("/ok"), "method": "HEAD"}, session=session)
    assert result.outcome is Outcome.UP


def test_validate_messages():
    with pytest.raises(CheckConfigError) as info:
        check.validate(
            {
                "url": "ftp://example.com/x",
                "expected_status": ["abc"],
                "max_body_kib": 0,
                "method": "FETCH",
                "headers": {"X-A": "line\nbreak-secret"},
            }
        )
    errors = info.value.errors
    assert "check.url: must be http or https" in errors
    assert any(e.startswith("check.expected_status[0]:") for e in errors)
    assert any(e.startswith("check.max_body_kib:") for e in errors)
    assert any(e.startswith("check.method:") for e in errors)
    assert "break-secret" not in str(info.value)
    with pytest.raises(CheckConfigError, match="json_expected: is required"):
        check.validate({"url": "http://x/", "json_path": "a.b"})
    normalised = check.validate({"url": "http://x/", "expected_status": "200-204"})
    assert normalised["expected_status"] == [[200, 204]]
    assert normalised["max_body_kib"] == 64 and normalised["max_redirects"] == 3
    assert normalised["verify_tls"] is True


def test_json_path_get():
    doc = {"a": {"b": [{"c": 1}, {"c": 2}]}}
    assert json_path_get(doc, "a.b.1.c") == 2
    assert json_path_get(doc, "a.b.-1.c") == 2
    assert json_path_get(doc, "a.x") is not None  # the sentinel, not an exception
