from __future__ import annotations

import time

import pytest

from app.checks.base import CheckConfigError, CheckContext, Outcome
from app.checks.tcp import TcpCheck

check = TcpCheck()
ctx = CheckContext(timeout=2.0)


async def test_open_port_is_up(http_target):
    result = await check.run({"host": "127.0.0.1", "port": http_target.port}, ctx)
    assert result.outcome is Outcome.UP and "connected" in result.detail


async def test_closed_port_is_down(closed_port):
    result = await check.run({"host": "127.0.0.1", "port": closed_port}, ctx)
    assert result.outcome is Outcome.DOWN
    assert "connection refused" in result.detail


async def test_banner_matches(banner_target):
    result = await check.run(
        {"host": "127.0.0.1", "port": banner_target.port, "expect_banner": "SSH-2.0"}, ctx
    )
    assert result.outcome is Outcome.UP and "banner matched" in result.detail


async def test_banner_mismatch(banner_target):
    result = await check.run(
        {"host": "127.0.0.1", "port": banner_target.port, "expect_banner": "220 smtp", "timeout": 0.5}, ctx
    )
    assert result.outcome is Outcome.DOWN
    assert "banner does not contain" in result.detail and "SSH-2.0" in result.detail


async def test_silent_server_banner_times_out_within_budget(silent_target):
    started = time.monotonic()
    result = await check.run(
        {"host": "127.0.0.1", "port": silent_target.port, "expect_banner": "hello", "timeout": 0.4}, ctx
    )
    assert result.outcome is Outcome.DOWN
    assert time.monotonic() - started < 2.0


def test_validate():
    with pytest.raises(CheckConfigError) as info:
        check.validate({"host": "", "port": 70000})
    assert "check.host: is required" in info.value.errors
    assert "check.port: must be <= 65535" in info.value.errors
    assert check.validate({"host": "db", "port": 5432})["banner_max_bytes"] == 1024
