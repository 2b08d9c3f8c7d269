from __future__ import annotations

import shutil
import sys
import time

import pytest

from app.checks.base import CheckConfigError, CheckContext, Outcome
from app.checks.command import CommandCheck

check = CommandCheck()
enabled = CheckContext(timeout=5, commands_enabled=True)


async def test_exit_zero_is_up():
    result = await check.run({"argv": ["true"]}, enabled)
    assert result.outcome is Outcome.UP and result.metrics == {"exit_code": 0.0}


async def test_nonzero_is_down_with_output_tail():
    result = await check.run(
        {"argv": ["sh", "-c", "echo starting; echo 'db unreachable' >&2; exit 4"]}, enabled
    )
    assert result.outcome is Outcome.DOWN
    assert result.detail == "exit 4: db unreachable"


async def test_false_is_down():
    result = await check.run({"argv": ["false"]}, enabled)
    assert result.outcome is Outcome.DOWN and result.detail == "exit 1"


async def test_hang_is_killed_on_timeout():
    started = time.monotonic()
    result = await check.run({"argv": ["sleep", "30"], "timeout": 0.5}, enabled)
    assert result.outcome is Outcome.DOWN
    assert result.detail == "timeout after 0.5s (process group killed)"
    assert time.monotonic() - started < 4


async def test_megabytes_of_output_are_bounded():
    result = await check.run(
        {"argv": [sys.executable, "-c", "print('x' * 5_000_000); raise SystemExit(2)"]}, enabled
    )
    assert result.outcome is Outcome.DOWN and result.detail.startswith("exit 2: …")
    assert len(result.detail) <= 300


async def test_missing_executable():
    result = await check.run({"argv": ["definitely-not-installed-cmd"]}, enabled)
    assert result.outcome is Outcome.DOWN
    assert result.detail == "cannot run command: executable not found: 'definitely-not-installed-cmd'"


async def test_refused_when_disabled():
    result = await check.run({"argv": ["true"]}, CheckContext(commands_enabled=False))
    assert result.outcome is Outcome.DOWN and "command checks are disabled" in result.detail
    with pytest.raises(CheckConfigError, match="check.argv: command checks are disabled"):
        check.validate({"argv": ["true"]}, CheckContext(commands_enabled=False))
    # Without a context only the shape is validated (e.g. when loading stored definitions).
    assert check.validate({"argv": ["true"]})["argv"] == ["true"]


async def test_allowlist_by_name_and_path():
    by_name = CheckContext(commands_enabled=True, command_allowlist=["true"])
    assert (await check.run({"argv": ["true"]}, by_name)).outcome is Outcome.UP
    refused = await check.run({"argv": ["false"]}, by_name)
    assert refused.outcome is Outcome.DOWN and "not in the command allowlist" in refused.detail
    true_path = shutil.which("true")
    by_path = CheckContext(commands_enabled=True, command_allowlist=[true_path])
    assert (await check.run({"argv": ["true"]}, by_path)).outcome is Outcome.UP
    assert (await check.run({"argv": [true_path]}, by_path)).outcome is Outcome.UP
    # A bare-name entry never allows some other file of the same name.
    sneaky = await check.run({"argv": ["/tmp/true"]}, by_name)
    assert sneaky.outcome is Outcome.DOWN


async def test_env_allowlist(monkeypatch):
    monkeypatch.setenv("PG_TEST_VISIBLE", "yes")
    monkeypatch.setenv("PG_TEST_HIDDEN", "secret")
    params = {
        "argv": ["sh", "-c", 'test "$PG_TEST_VISIBLE$EXTRA" = yes1 && test -z "$PG_TEST_HIDDEN"'],
        "env_allow": ["PG_TEST_VISIBLE"],
        "env": {"EXTRA": "1"},
    }
    assert (await check.run(params, enabled)).outcome is Outcome.UP


def test_validate_argv_shapes():
    with pytest.raises(CheckConfigError, match="must be a list of arguments, not a string"):
        check.validate({"argv": "systemctl restart worker"})
    with pytest.raises(CheckConfigError, match="check.argv: must be a non-empty list"):
        check.validate({"argv": []})
    with pytest.raises(CheckConfigError, match="check.cwd: must be an absolute path"):
        check.validate({"argv": ["true"], "cwd": "relative"})
