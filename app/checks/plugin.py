"""`plugin` check: call a Python function (the seed's custom health checks).

The callable is named "module:function" and must come from an installed entry point of the
`pipeline_guard.plugins` group or from a module prefix the admin allowlisted — a check definition
must not be a way to import arbitrary code into the guard.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
import re
import sys
import time
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any, ClassVar

from app.checks import plugin_threads
from app.checks.base import (
    CheckConfigError,
    CheckContext,
    CheckKind,
    CheckResult,
    ConfigErrors,
    effective_timeout,
    opt_number,
    require_mapping,
    short,
)
from app.core.deadlines import lenient_timeout

ENTRY_POINT_GROUP = "pipeline_guard.plugins"
UP_WORDS = frozenset({"ok", "healthy", "up", "pass", "passing", "green"})
DEGRADED_WORDS = frozenset({"degraded", "warn", "warning", "yellow"})
MAX_METRICS = 32
_TARGET_RE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*\Z")


def published_callables() -> frozenset[str]:
    """ "module:function" values of the installed `pipeline_guard.plugins` entry points."""
    return _published(tuple(sys.path))


@functools.lru_cache(maxsize=4)
def _published(path: tuple[str, ...]) -> frozenset[str]:  # noqa: ARG001  the lru_cache key: a changed sys.path rescans
    # Scanning every installed distribution costs milliseconds; a plugin check may run every few
    # seconds. Keyed by sys.path so a newly added path is seen.
    return frozenset(ep.value.replace(" ", "") for ep in entry_points(group=ENTRY_POINT_GROUP))


def _module_allowed(module: str, prefixes: list[str]) -> bool:
    # Dotted-boundary match: "acme.checks" allows "acme.checks.db", not "acme.checksevil".
    return any(module == p or module.startswith(p.rstrip(".") + ".") for p in prefixes if p)


def interpret(value: Any, latency_s: float) -> CheckResult:
    """Map what a plugin returned to a result: a status word, a bool, a CheckResult, or a dict
    with `status` (or `healthy`) whose numeric fields become metrics."""
    if isinstance(value, CheckResult):
        return value
    if isinstance(value, bool):
        return (CheckResult.up if value else CheckResult.down)(f"plugin returned {value}", latency_s)
    if isinstance(value, str):
        return _from_status(value, latency_s, {}, None)
    if isinstance(value, Mapping):
        metrics: dict[str, float] = {}
        for key, item in value.items():
            if (
                isinstance(key, str)
                and isinstance(item, int | float)
                and not isinstance(item, bool)
                and math.isfinite(item)
                and len(metrics) < MAX_METRICS
            ):
                metrics[key] = float(item)
        message = value.get("message") or value.get("detail")
        status = value.get("status", value.get("healthy"))
        if isinstance(status, bool):
            status = "ok" if status else "down"
        if not isinstance(status, str):
            return CheckResult.down("plugin result has no status", latency_s, metrics=metrics)
        return _from_status(status, latency_s, metrics, message if isinstance(message, str) else None)
    return CheckResult.down(f"plugin returned an unsupported value ({type(value).__name__})", latency_s)


def _from_status(
    status: str, latency_s: float, metrics: dict[str, float], message: str | None
) -> CheckResult:
    word = status.strip().lower()
    detail = f"status {short(status, 40)!r}" + (f": {message}" if message else "")
    if word in UP_WORDS:
        return CheckResult.up(detail, latency_s, metrics=metrics)
    if word in DEGRADED_WORDS:
        return CheckResult.degraded(detail, latency_s, metrics=metrics)
    return CheckResult.down(detail, latency_s, metrics=metrics)


class PluginCheck(CheckKind):
    name: ClassVar[str] = "plugin"

    def validate(self, params: Mapping[str, Any], ctx: CheckContext | None = None) -> dict[str, Any]:
        params = require_mapping(params)
        errs = ConfigErrors()
        target = params.get("callable")
        if not isinstance(target, str) or not _TARGET_RE.match(target.replace(" ", "")):
            errs.add("callable", 'must look like "package.module:function"')
        kwargs = params.get("kwargs") or {}
        if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
            errs.add("kwargs", "must be an object of keyword arguments")
            kwargs = {}
        out = {
            "callable": target.replace(" ", "") if isinstance(target, str) else target,
            "kwargs": dict(kwargs),
            "timeout": opt_number(errs, params, "timeout", minimum=0.01, maximum=300),
        }
        errs.raise_if_any()
        if ctx is not None and (refusal := self.refusal(out["callable"], ctx)):
            raise CheckConfigError(f"check.callable: {refusal}")
        return out

    @staticmethod
    def refusal(target: str, ctx: CheckContext) -> str | None:
        module = target.split(":", 1)[0]
        if _module_allowed(module, ctx.plugin_module_allowlist) or target in published_callables():
            return None
        return (
            f"{target!r} is neither published in the {ENTRY_POINT_GROUP!r} entry points "
            "nor under an allowlisted module prefix"
        )

    async def probe(self, params: dict[str, Any], ctx: CheckContext) -> CheckResult:
        target = params["callable"]
        if refusal := self.refusal(target, ctx):
            return CheckResult.down(f"refused: {refusal}")
        timeout = effective_timeout(params, ctx)
        module_name, _, attr_path = target.partition(":")
        started = time.monotonic()
        try:
            async with lenient_timeout(timeout):
                # Importing runs module code: keep it off the event loop.
                module = await plugin_threads.call(importlib.import_module, module_name)
                fn: Any = module
                for attr in attr_path.split("."):
                    fn = getattr(fn, attr)
                if not callable(fn):
                    return CheckResult.down(f"{target} is not callable")
                if inspect.iscoroutinefunction(fn):
                    value = await fn(**params["kwargs"])
                else:
                    # A sync plugin that hangs keeps its thread until it returns; we still answer
                    # on time, and the guard's other threads are not taken (plugin_threads.py).
                    value = await plugin_threads.call(fn, **params["kwargs"])
                    if inspect.isawaitable(value):
                        value = await value
        except TimeoutError:
            return CheckResult.down(f"plugin timeout after {timeout:g}s", time.monotonic() - started)
        except plugin_threads.TooManyRunning as exc:
            return CheckResult.down(str(exc), time.monotonic() - started)
        except ImportError as exc:
            return CheckResult.down(f"cannot import {module_name!r}: {short(str(exc), 100)}")
        except AttributeError:
            return CheckResult.down(f"{target}: no such function")
        except Exception as exc:  # noqa: BLE001 - plugin bugs become DOWN, by contract
            return CheckResult.down(
                f"plugin raised {type(exc).__name__}: {short(str(exc), 120)}", time.monotonic() - started
            )
        return interpret(value, time.monotonic() - started)
