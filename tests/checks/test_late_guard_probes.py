"""Probes of a guard that could not run for a while: the target answered in time, but the answer sat
in the socket while the guard's event loop was blocked past the check's timeout. The probe reads it
(UP), it does not report "timeout". A target that really does not answer still times out.

The targets (`tests/support/late_guard.py`) run on their own threads; the loop is blocked for real,
with time.sleep, as soon as the target has the request."""

from __future__ import annotations

import asyncio

from app.checks.base import CheckContext, Outcome
from app.checks.http import HttpCheck
from app.checks.tcp import TcpCheck
from tests.support.late_guard import Target, block_the_loop_once_the_target_has_the_request

TIMEOUT_S = 0.3


async def probe_while_blocked(kind, params: dict, target: Target):
    blocker = asyncio.create_task(block_the_loop_once_the_target_has_the_request(target))
    result = await kind.run(params, CheckContext(timeout=TIMEOUT_S))
    await blocker
    return result


async def test_http_answer_read_after_the_guard_was_blocked(http_thread_target):
    url = f"http://127.0.0.1:{http_thread_target.port}/ok"
    result = await probe_while_blocked(HttpCheck(), {"url": url}, http_thread_target)
    assert result.outcome is Outcome.UP, result.detail
    assert result.detail.startswith("HTTP 200")


async def test_http_target_that_hangs_still_times_out_when_the_guard_was_blocked(http_thread_target):
    url = f"http://127.0.0.1:{http_thread_target.port}/hang"
    result = await probe_while_blocked(HttpCheck(), {"url": url}, http_thread_target)
    assert result.outcome is Outcome.DOWN
    assert result.detail == f"timeout after {TIMEOUT_S:g}s"


async def test_tcp_banner_read_after_the_guard_was_blocked(banner_thread_target):
    params = {"host": "127.0.0.1", "port": banner_thread_target.port, "expect_banner": "SSH-2.0"}
    result = await probe_while_blocked(TcpCheck(), params, banner_thread_target)
    assert result.outcome is Outcome.UP, result.detail


async def test_tcp_banner_that_never_comes_still_fails_when_the_guard_was_blocked(banner_thread_target):
    banner_thread_target.hang.set()  # type: ignore[attr-defined]
    params = {"host": "127.0.0.1", "port": banner_thread_target.port, "expect_banner": "SSH-2.0"}
    result = await probe_while_blocked(TcpCheck(), params, banner_thread_target)
    assert result.outcome is Outcome.DOWN
    assert "banner does not contain" in result.detail
