"""``restart`` (alias ``command``): run an argument list, never through a shell.

The admin decides what may run: command actions are off unless ``healing.command_actions_enabled``;
when ``healing.command_allowlist`` is non-empty the executable must be on it (by resolved absolute
path; a bare name is looked up on the guard's PATH); loader/interpreter variables
(``app.security.commands``) are refused;
the child sees PATH plus only the variables named in ``healing.command_env_allowlist`` and the
policy's own ``env``. Every ``env`` value is a secret (users put tokens there): stored encrypted, shown
as ``********`` to every role, masked out of the command's output. The working directory must be
one of ``healing.command_cwd_allowlist`` when that list is set. A timeout kills the whole process
group; output is capped (head + tail, a few KiB).
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from app.healing.secretbox import HealingSecrets, SecretBoxError
from app.healing.strategies.base import (
    MAX_OUTPUT_CHARS,
    ActionContext,
    ActionResult,
    Strategy,
    StrategyConfigError,
)
from app.outbound.process import CommandError, build_env, run_command
from app.security.commands import env_refusals, executable_refusal
from app.security.crypto import MASK
from app.security.recovery_secrets import masked_text

DEFAULT_TIMEOUT_S = 60.0
MAX_TIMEOUT_S = 3600.0
_ALLOWED = {"argv", "cwd", "env", "timeout", "success_exit_codes"}


class CommandStrategy(Strategy):
    kind: ClassVar[str] = "restart"
    aliases: ClassVar[tuple[str, ...]] = ("command",)

    def __init__(self, settings: Any = None, secrets: HealingSecrets | None = None) -> None:
        self.secrets = secrets or HealingSecrets(None)
        healing = getattr(settings, "healing", None)
        self.enabled = bool(getattr(healing, "command_actions_enabled", False))
        self.allowlist = list(getattr(healing, "command_allowlist", []) or [])
        self.env_allowlist = list(getattr(healing, "command_env_allowlist", []) or [])
        self.cwd_allowlist = list(getattr(healing, "command_cwd_allowlist", []) or [])

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(params, dict):
            raise StrategyConfigError("params", "must be a mapping")
        unknown = sorted(set(params) - _ALLOWED)
        if unknown:
            raise StrategyConfigError(unknown[0], "unknown parameter")
        argv = params.get("argv")
        if isinstance(argv, str):
            raise StrategyConfigError("argv", "must be a list of arguments (no shell strings)")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) and a for a in argv):
            raise StrategyConfigError("argv", "must be a non-empty list of non-empty strings")
        if any("\0" in a for a in argv):
            raise StrategyConfigError("argv", "must not contain NUL bytes")
        cwd = params.get("cwd")
        if cwd is not None and (not isinstance(cwd, str) or not os.path.isabs(cwd)):
            raise StrategyConfigError("cwd", "must be an absolute path")
        env = params.get("env") or {}
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise StrategyConfigError("env", "must map names to string values")
        try:
            build_env((), env, source={})
        except ValueError as exc:
            raise StrategyConfigError("env", str(exc)) from None
        for name, reason in env_refusals(env):
            raise StrategyConfigError(f"env.{name}", reason)
        if self.enabled and (
            refusal := executable_refusal(argv[0], self.allowlist, "healing.command_allowlist")
        ):
            raise StrategyConfigError("argv", refusal)
        timeout = params.get("timeout", DEFAULT_TIMEOUT_S)
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout <= MAX_TIMEOUT_S
        ):
            raise StrategyConfigError("timeout", f"must be a number of seconds in (0, {MAX_TIMEOUT_S:g}]")
        codes = params.get("success_exit_codes", [0])
        if not isinstance(codes, list) or not codes or not all(isinstance(c, int) for c in codes):
            raise StrategyConfigError("success_exit_codes", "must be a non-empty list of integers")
        shown = {
            "argv": list(argv),
            "cwd": cwd,
            "env": dict.fromkeys(env, MASK),
            "timeout": float(timeout),
            "success_exit_codes": list(codes),
        }
        return self.secrets.sealed(shown, {"env": dict(env)} if env else {})

    def describe(self, params: dict[str, Any]) -> str:
        where = f" in {params['cwd']}" if params.get("cwd") else ""
        return f"run {params['argv']!r}{where} (timeout {params['timeout']:g} s)"

    def refusal(self, params: dict[str, Any]) -> str | None:
        """Why the admin's configuration forbids running this command now (None when allowed)."""
        if not self.enabled:
            return "command actions are disabled (healing.command_actions_enabled is false)"
        # By resolved absolute path, never by basename: ".../evil/python3" is not "python3".
        if reason := executable_refusal(params["argv"][0], self.allowlist, "healing.command_allowlist"):
            return reason
        if refused := env_refusals(params.get("env") or {}):
            return "; ".join(reason for _, reason in refused)
        cwd = params.get("cwd")
        if (
            cwd
            and self.cwd_allowlist
            and not any(
                os.path.commonpath([os.path.realpath(cwd), os.path.realpath(a)]) == os.path.realpath(a)
                for a in self.cwd_allowlist
            )
        ):
            return f"working directory {cwd!r} is not under healing.command_cwd_allowlist"
        return None

    async def execute(self, ctx: ActionContext) -> ActionResult:
        try:
            p = self.secrets.revealed(ctx.params)
        except SecretBoxError as exc:
            return ActionResult(False, f"command environment unusable: {exc}")
        if reason := self.refusal(p):
            return ActionResult(success=False, detail=reason, data={"refused": True})
        env = build_env(
            self.env_allowlist,
            {
                **p["env"],
                "PIPELINE_GUARD_COMPONENT": ctx.component,
                "PIPELINE_GUARD_INCIDENT": str(ctx.incident_id),
                "PIPELINE_GUARD_ATTEMPT": str(ctx.attempt_number),
            },
        )
        timeout = min(p["timeout"], ctx.timeout_s)
        try:
            result = await run_command(
                p["argv"],
                timeout=timeout,
                cwd=p.get("cwd"),
                env=env,
                max_output_bytes=MAX_OUTPUT_CHARS // 2,
                on_start=ctx.on_process,
            )
        except CommandError as exc:
            return ActionResult(success=False, detail=f"could not start command: {exc}")
        output = result.stdout + (("\n[stderr]\n" + result.stderr) if result.stderr else "")
        # The output is shown to every role: a command that prints its environment must not leak it.
        output = masked_text(
            output, sorted((v for v in p["env"].values() if len(v) >= 4), key=len, reverse=True)
        )
        data = {
            "exit_code": result.exit_code,
            "duration_s": round(result.duration_s, 3),
            "truncated": result.truncated,
        }
        if result.timed_out:
            return ActionResult(
                False,
                f"command timed out after {timeout:g} s (process group killed)",
                output,
                {**data, "timed_out": True},
            )
        ok = result.exit_code in p["success_exit_codes"]
        return ActionResult(ok, f"command exited with {result.exit_code}", output, data)
