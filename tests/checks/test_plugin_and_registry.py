from __future__ import annotations

import os
import sys
import textwrap

import pytest

from app.checks.base import CheckConfigError, CheckContext, CheckKind, CheckResult, Outcome
from app.checks.plugin import PluginCheck, interpret
from app.checks.registry import CheckRegistry, UnknownCheckKind

PLUGIN_SOURCE = textwrap.dedent(
    """
    import asyncio, time

    def seed():
        return {"status": "ok", "response_time": 0.1, "cpu_usage": 0.3, "memory_usage": 0.4}

    async def degraded():
        return "degraded"

    def boolean_false():
        return False

    def hangs():
        time.sleep(1)
        return "ok"

    def broken():
        raise RuntimeError("disk full")

    def with_kwargs(threshold):
        return {"healthy": threshold < 5, "message": "queue depth fine"}
    """
)

FAKE_KIND_SOURCE = textwrap.dedent(
    """
    from app.checks.base import CheckKind, CheckResult

    class AlwaysUp(CheckKind):
        name = "always_up"
        def validate(self, params, ctx=None):
            return dict(params)
        async def probe(self, params, ctx):
            return CheckResult.up("fine")
    """
)


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    (tmp_path / "pg_test_plugins.py").write_text(PLUGIN_SOURCE)
    (tmp_path / "pg_test_kinds.py").write_text(FAKE_KIND_SOURCE)
    dist = tmp_path / "pg_test_dist-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pg-test-dist\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[pipeline_guard.checks]\nalways_up = pg_test_kinds:AlwaysUp\nbroken = pg_test_kinds:Missing\n\n"
        "[pipeline_guard.plugins]\nseed = pg_test_plugins:seed\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("pg_test_plugins", "pg_test_kinds"):
        sys.modules.pop(name, None)


plugin = PluginCheck()
allowed = CheckContext(timeout=2, plugin_module_allowlist=["pg_test_plugins"])


async def test_seed_dict_gives_metrics(plugin_path):
    result = await plugin.run({"callable": "pg_test_plugins:seed"}, allowed)
    assert result.outcome is Outcome.UP
    assert result.metrics == {"response_time": 0.1, "cpu_usage": 0.3, "memory_usage": 0.4}


async def test_async_degraded_bool_and_kwargs(plugin_path):
    assert (await plugin.run({"callable": "pg_test_plugins:degraded"}, allowed)).outcome is Outcome.DEGRADED
    assert (await plugin.run({"callable": "pg_test_plugins:boolean_false"}, allowed)).outcome is Outcome.DOWN
    result = await plugin.run(
        {"callable": "pg_test_plugins:with_kwargs", "kwargs": {"threshold": 1}}, allowed
    )
    assert result.outcome is Outcome.UP and "queue depth fine" in result.detail


async def test_hanging_and_raising_plugins_are_down(plugin_path):
    hang = await plugin.run({"callable": "pg_test_plugins:hangs", "timeout": 0.3}, allowed)
    assert hang.outcome is Outcome.DOWN and hang.detail == "plugin timeout after 0.3s"
    broken = await plugin.run({"callable": "pg_test_plugins:broken"}, allowed)
    assert broken.outcome is Outcome.DOWN and broken.detail == "plugin raised RuntimeError: disk full"
    missing = await plugin.run({"callable": "pg_test_plugins:nope"}, allowed)
    assert missing.outcome is Outcome.DOWN and "no such function" in missing.detail


async def test_only_entry_points_or_allowlisted_modules(plugin_path):
    # Published through the pipeline_guard.plugins entry point: allowed without an allowlist.
    published = await plugin.run({"callable": "pg_test_plugins:seed"}, CheckContext(timeout=2))
    assert published.outcome is Outcome.UP
    refused = await plugin.run({"callable": "os:getcwd"}, CheckContext(timeout=2))
    assert refused.outcome is Outcome.DOWN and "neither published" in refused.detail
    prefix_trick = CheckContext(plugin_module_allowlist=["pg_test"])
    with pytest.raises(CheckConfigError, match="check.callable"):
        plugin.validate({"callable": "pg_test_plugins:degraded"}, prefix_trick)
    with pytest.raises(CheckConfigError, match='must look like "package.module:function"'):
        plugin.validate({"callable": "not a target"})


def test_interpret():
    assert interpret("HEALTHY", 0.1).outcome is Outcome.UP
    assert interpret("warning", 0.1).outcome is Outcome.DEGRADED
    assert interpret("exploded", 0.1).outcome is Outcome.DOWN
    assert interpret({"status": "ok", "x": float("nan"), "flag": True}, 0.1).metrics == {}
    assert interpret(None, 0.1).outcome is Outcome.DOWN
    assert interpret({"cpu": 1}, 0.1).outcome is Outcome.DOWN


async def test_registry_builtins_and_entry_points(plugin_path):
    registry = CheckRegistry()
    assert not registry._loaded  # lazy: nothing loaded until first use
    kinds = registry.kinds()
    assert {"http", "tcp", "command", "heartbeat", "plugin", "always_up"} <= set(kinds)
    assert "broken" in registry.load_errors and "broken" not in kinds
    result = await registry.run("always_up", {}, CheckContext())
    assert result.outcome is Outcome.UP
    with pytest.raises(UnknownCheckKind, match="unknown check kind 'smtp'"):
        registry.get("smtp")
    assert (await registry.run("smtp", {}, CheckContext())).outcome is Outcome.DOWN
    with pytest.raises(CheckConfigError, match="check.url"):
        registry.validate("http", {"url": "gopher://x"})


async def test_a_raising_kind_never_raises_to_the_caller():
    class Exploding(CheckKind):
        name = "exploding"

        def validate(self, params, ctx=None):
            return dict(params)

        async def probe(self, params, ctx):
            raise RuntimeError("token=abc123 leaked?")

    registry = CheckRegistry(load_entry_points=False)
    registry.register(Exploding())
    result = await registry.run("exploding", {}, CheckContext())
    assert result.outcome is Outcome.DOWN
    assert "RuntimeError" in result.detail and "abc123" not in result.detail
    assert isinstance(result, CheckResult)


HUNG_SOURCE = textwrap.dedent(
    """
    import threading

    release = threading.Event()

    def hung():
        release.wait(60)
        return "ok"
    """
)


async def test_hung_plugins_do_not_starve_name_resolution(tmp_path, monkeypatch):
    """A synchronous plugin that hangs keeps its thread (Python cannot stop it), but not one of the
    loop's default executor, which resolves every host name: with more hung plugins than that
    executor has threads, a lookup still answers, and past the plugins' own bound a call is refused
    at once instead of queueing."""
    import asyncio

    from app.checks import plugin_threads

    (tmp_path / "pg_hung_plugins.py").write_text(HUNG_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    ctx = CheckContext(timeout=2, plugin_module_allowlist=["pg_hung_plugins"])
    loop = asyncio.get_running_loop()
    executor_threads = min(32, (os.cpu_count() or 1) + 4)  # ThreadPoolExecutor's default size
    hung = executor_threads + 2
    room = plugin_threads.running() + hung  # a machine with many cores has a bigger default executor
    monkeypatch.setattr(plugin_threads, "MAX_RUNNING", max(plugin_threads.MAX_RUNNING, room))
    try:
        results = await asyncio.gather(
            *(plugin.run({"callable": "pg_hung_plugins:hung", "timeout": 0.2}, ctx) for _ in range(hung))
        )
        assert all(r.outcome is Outcome.DOWN and "timeout" in r.detail for r in results)
        # The loop's own threads are free: a name lookup answers (it waited behind the hung ones).
        await asyncio.wait_for(loop.getaddrinfo("localhost", 80), timeout=10)
        monkeypatch.setattr(plugin_threads, "MAX_RUNNING", plugin_threads.running())
        refused = await plugin.run({"callable": "pg_hung_plugins:hung", "timeout": 5}, ctx)
        assert refused.outcome is Outcome.DOWN and "still running" in refused.detail
    finally:
        sys.modules["pg_hung_plugins"].release.set()
        sys.modules.pop("pg_hung_plugins", None)
