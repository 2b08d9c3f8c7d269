"""`command` check: run an argument list (never a shell); exit 0 = up. Only when the admin
enabled command checks, and only allowlisted executables."""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from typing import Any, ClassVar

from app.checks.base import (
    CheckConfigError,
    CheckContext,
    CheckKind,
    CheckResult,
    ConfigErrors,
    effective_timeout,
    opt_number,
    require_mapping,
)
from app.outbound.process import CommandError, build_env, run_command
from app.security.commands import env_refusals, executable_refusal

DETAIL_TAIL_CHARS = 200


def _executable_refusal(argv0: str, ctx: CheckContext, path: str | None) -> str | None:
    """Why `argv0` may not run under ctx's policy, or None."""
    if not ctx.commands_enabled:
        return "command checks are disabled (an admin must enable them in the config)"
    if not ctx.command_allowlist:
        return None
    # By resolved absolute path: a file elsewhere with an allowlisted name never matches.
    return executable_refusal(argv0, ctx.command_allowlist, "the command allowlist", path)


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= DETAIL_TAIL_CHARS else "…" + text[-DETAIL_TAIL_CHARS:]


class CommandCheck(CheckKind):
    name: ClassVar[str] = "command"

    def validate(self, params: Mapping[str, Any], ctx: CheckContext | None = None) -> dict[str, Any]:
        params = require_mapping(params)
        errs = ConfigErrors()
        argv = params.get("argv")
        if isinstance(argv, str):
            errs.add("argv", "must be a list of arguments, not a string (commands never run through a shell)")
        elif not isinstance(argv, list | tuple) or not argv:
            errs.add("argv", "must be a non-empty list of strings")
        elif not all(isinstance(a, str) for a in argv) or not argv[0] or any("\0" in a for a in argv):
            errs.add("argv", "every argument must be a string (without NUL); the first must not be empty")
        cwd = params.get("cwd")
        if cwd is not None and (not isinstance(cwd, str) or not os.path.isabs(cwd)):
            errs.add("cwd", "must be an absolute path")
        env_allow = params.get("env_allow") or []
        if not isinstance(env_allow, list | tuple) or not all(isinstance(n, str) for n in env_allow):
            errs.add("env_allow", "must be a list of variable names")
            env_allow = []
        env = params.get("env") or {}
        if not isinstance(env, Mapping) or not all(
            isinstance(k, str) and k and "=" not in k and isinstance(v, str) for k, v in env.items()
        ):
            errs.add("env", "must be an object of variable name to string value")
            env = {}
        for name, reason in env_refusals([*env, *env_allow]):
            errs.add(f"env.{name}" if name in env else "env_allow", reason)
        out = {
            "argv": list(argv) if isinstance(argv, list | tuple) else argv,
            "cwd": cwd,
            "env_allow": list(env_allow),
            "env": dict(env),
            "max_output_kib": opt_number(
                errs, params, "max_output_kib", default=8, minimum=1, maximum=64, integer=True
            ),
            "timeout": opt_number(errs, params, "timeout", minimum=0.01, maximum=3600),
        }
        errs.raise_if_any()
        if ctx is not None:
            refusal = _executable_refusal(
                out["argv"][0], ctx, build_env(out["env_allow"], out["env"])["PATH"]
            )
            if refusal:
                raise CheckConfigError(f"check.argv: {refusal}")
        return out

    async def probe(self, params: dict[str, Any], ctx: CheckContext) -> CheckResult:
        env = build_env(params["env_allow"], params["env"])
        refusal = _executable_refusal(params["argv"][0], ctx, env["PATH"])
        if refusal is None and (refused_env := env_refusals([*params["env_allow"], *params["env"]])):
            refusal = "; ".join(reason for _, reason in refused_env)  # stored before the rule existed
        if refusal:
            return CheckResult.down(f"refused: {refusal}")
        timeout = effective_timeout(params, ctx)
        try:
            result = await run_command(
                params["argv"],
                timeout=timeout,
                cwd=params["cwd"],
                env=env,
                max_output_bytes=params["max_output_kib"] * 1024,
            )
        except CommandError as exc:
            return CheckResult.down(f"cannot run command: {exc}")
        latency = result.duration_s
        if result.timed_out:
            return CheckResult.down(f"timeout after {timeout:g}s (process group killed)", latency)
        code = result.exit_code
        metrics = {"exit_code": float(code)} if code is not None else {}
        if code == 0:
            return CheckResult.up(f"exit 0 in {latency * 1000:.0f} ms", latency, metrics=metrics)
        if code is not None and code < 0:
            try:
                what = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                what = f"killed by signal {-code}"
        else:
            what = f"exit {code}"
        output = _tail(result.stderr) or _tail(result.stdout)
        return CheckResult.down(f"{what}: {output}" if output else what, latency, metrics=metrics)
