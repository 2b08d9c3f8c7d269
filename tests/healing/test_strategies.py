"""The command and webhook strategies, bounded, against real subprocesses and a loopback HTTP server."""

from __future__ import annotations

import json
import sys
import time

import pytest
from aiohttp import web
from cryptography.fernet import Fernet

from app.config.settings import Settings
from app.healing.policy import normalise_strategies
from app.healing.secretbox import HealingSecrets
from app.healing.strategies.base import ActionContext, StrategyConfigError, run_bounded
from app.healing.strategies.command import CommandStrategy
from app.healing.strategies.registry import StrategyRegistry
from app.healing.strategies.webhook import WebhookStrategy, render
from app.security.crypto import SecretBox

PY = sys.executable


def ctx(params, timeout=30.0, **kw) -> ActionContext:
    return ActionContext(
        component="w",
        labels={},
        incident_id="7",
        attempt_id=1,
        attempt_number=1,
        params=params,
        timeout_s=timeout,
        **kw,
    )


def settings(**healing) -> Settings:
    return Settings(
        env="test",
        healing={"command_actions_enabled": True, **healing},
        security={"ssrf_allowlist": ["127.0.0.1"], "encryption_key": [Fernet.generate_key().decode()]},
    )


async def test_command_that_hangs_is_killed_with_its_group():
    strategy = CommandStrategy(settings())
    code = (
        "import subprocess,sys,time; "
        "subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']); time.sleep(60)"
    )
    params = strategy.validate({"argv": [PY, "-c", code], "timeout": 0.5})
    started = time.monotonic()
    result = await run_bounded(strategy, ctx(params))
    assert not result.success and "timed out" in result.detail and result.data["timed_out"]
    assert time.monotonic() - started < 10


async def test_restart_that_finished_while_the_guard_was_blocked_succeeded():
    """The restart command exits 0 after 50 ms; the guard's loop is blocked (time.sleep on it) from the
    spawn until past the action's 0.3 s timeout (the command's own and the action's). The action
    succeeded: it is not reported timed out (a retry would restart a component that was restarted)."""
    import asyncio

    strategy = CommandStrategy(settings())
    params = strategy.validate({"argv": ["sh", "-c", "sleep 0.05"], "timeout": 0.3})
    result = await run_bounded(
        strategy,
        ctx(
            params, timeout=0.3, on_process=lambda pid: asyncio.get_running_loop().call_soon(time.sleep, 1.0)
        ),
    )
    assert result.success, result.detail
    assert result.data["exit_code"] == 0


async def test_command_printing_50_mb_is_bounded():
    strategy = CommandStrategy(settings())
    code = "import sys; chunk='x'*1048576\nfor _ in range(50): sys.stdout.write(chunk)"
    params = strategy.validate({"argv": [PY, "-c", code], "timeout": 60})
    result = await run_bounded(strategy, ctx(params))
    assert result.success and result.data["truncated"]
    assert len(result.output) <= 4096 + 100


async def test_command_env_and_allowlists(monkeypatch, tmp_path):
    monkeypatch.setenv("ALLOWED_VAR", "yes")
    monkeypatch.setenv("PIPELINE_DATABASE_URL", "postgresql://secret")
    strategy = CommandStrategy(settings(command_env_allowlist=["ALLOWED_VAR"], command_allowlist=[PY]))
    code = (
        "import os,json; print(json.dumps({k: os.environ.get(k) for k in "
        "('ALLOWED_VAR','PIPELINE_DATABASE_URL','EXTRA','PIPELINE_GUARD_COMPONENT')}))"
    )
    params = strategy.validate({"argv": [PY, "-c", code], "env": {"EXTRA": "1"}, "cwd": str(tmp_path)})
    result = await run_bounded(strategy, ctx(params))
    assert result.success, result.detail
    assert json.loads(result.output) == {
        "ALLOWED_VAR": "yes",
        "PIPELINE_DATABASE_URL": None,
        "EXTRA": "1",
        "PIPELINE_GUARD_COMPONENT": "w",
    }
    with pytest.raises(StrategyConfigError, match="command_allowlist"):  # refused when saved...
        strategy.validate({"argv": ["/bin/true"]})
    other = {**params, "argv": ["/bin/true"]}
    assert "command_allowlist" in (await run_bounded(strategy, ctx(other))).detail  # ...and when run
    disabled = CommandStrategy(settings(command_actions_enabled=False))
    assert "disabled" in (await run_bounded(disabled, ctx(params))).detail
    with pytest.raises(StrategyConfigError):
        strategy.validate({"argv": "rm -rf / ; echo"})  # shell strings refused


def test_policy_validation_reports_strategy_problems():
    registry = StrategyRegistry(settings())
    _, problems = normalise_strategies(
        [
            {"kind": "restart", "argv": "systemctl restart x"},
            {"kind": "nope"},
            {"kind": "command", "argv": ["/bin/true"]},
        ],
        registry,
    )
    assert problems[0].startswith("recovery.strategies[0].argv:")
    assert problems[1].startswith("recovery.strategies[1].kind: unknown strategy")
    assert len(problems) == 2  # 'command' is an alias of 'restart'


def test_body_template_is_plain_substitution():
    body = {
        "text": "{component} down: {reason} {__class__} {component.__init__}",
        "n": 1,
        "list": ["{incident_id}"],
    }
    out = render(body, {"component": "w", "reason": "timeout", "incident_id": "7"})
    assert out == {"text": "w down: timeout {__class__} {component.__init__}", "n": 1, "list": ["7"]}


@pytest.fixture
async def receiver():
    seen = []

    async def hook(request):
        seen.append(
            {"method": request.method, "headers": dict(request.headers), "body": await request.json()}
        )
        return web.json_response({"ok": True}, status=int(request.query.get("status", "202")))

    app = web.Application()
    app.router.add_route("*", "/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/hook", seen
    await runner.cleanup()


async def test_webhook_secret_headers_encrypted_and_sent(receiver):
    url, seen = receiver
    s = settings()
    strategy = WebhookStrategy(s, HealingSecrets(SecretBox.from_settings(s)))
    params = strategy.validate(
        {
            "url": url,
            "headers": [
                {"name": "Authorization", "value": "Bearer s3cret", "secret": True},
                {"name": "X-Plain", "value": "p"},
            ],
            "body": {"component": "{component}", "incident": "{incident_id}", "why": "{reason}"},
        }
    )
    assert "s3cret" not in json.dumps(params)  # stored encrypted
    assert strategy.validate(params) == params  # idempotent on re-validation
    result = await run_bounded(strategy, ctx({**params, "_incident": {"reason": "3 failures"}}))
    assert result.success and "202" in result.detail
    assert seen[0]["headers"]["Authorization"] == "Bearer s3cret" and seen[0]["headers"]["X-Plain"] == "p"
    assert seen[0]["body"] == {"component": "w", "incident": "7", "why": "3 failures"}
    failing = await run_bounded(strategy, ctx(strategy.validate({"url": url + "?status=500"})))
    assert not failing.success and "500" in failing.detail


async def test_webhook_refuses_unlisted_private_destinations():
    strategy = WebhookStrategy(Settings(env="test"))
    with pytest.raises(StrategyConfigError, match="url"):
        strategy.validate({"url": "http://127.0.0.1:1/x"})
    with pytest.raises(StrategyConfigError, match="url"):
        strategy.validate({"url": "http://169.254.169.254/latest/meta-data"})
