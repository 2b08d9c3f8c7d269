"""Validation of a component's ``check`` and ``recovery`` documents.

This is the one seam between the registry and the check kinds / recovery strategies: the
monitoring and healing engines plug their per-kind validators in here.
"""

from __future__ import annotations

from typing import Any

from app.config.settings import parse_duration
from app.core.errors import ValidationFailed

POLICY_KEYS = {
    "strategies",
    "max_attempts",
    "backoff_initial",
    "backoff_max",
    "cooldown",
    "breaker_threshold",
    "breaker_window",
    "dry_run",
    "require_approval",
    "approval_timeout",
    "learned_ordering",
    "verify_timeout",
    "grace_period",
    "heal_on",
}
_POLICY_DURATIONS = {
    "backoff_initial",
    "backoff_max",
    "cooldown",
    "breaker_window",
    "approval_timeout",
    "verify_timeout",
    "grace_period",
}


def _problem(problems: list[str], path: str, message: str) -> None:
    problems.append(f"{path}: {message}")


def validate_check(check: dict[str, Any] | None) -> dict[str, Any] | None:
    """Normalise a check document ``{"kind": ..., "interval": ..., "timeout": ..., <params>}``."""
    if check is None:
        return None
    from app.checks.registry import default_registry  # the check kinds own their parameters

    problems: list[str] = []
    check = dict(check)
    kind = check.pop("kind", None)
    if not isinstance(kind, str) or not kind:
        raise ValidationFailed(
            "invalid check",
            details={"problems": ["check.kind: required (http, tcp, command, heartbeat or a plugin kind)"]},
        )
    common: dict[str, Any] = {}
    for key in ("interval", "timeout"):
        if key in check:
            try:
                value = parse_duration(check.pop(key))
                if value <= 0:
                    raise ValueError(f"must be positive, got {value:g}")
                common[key] = value
            except ValueError as exc:
                _problem(problems, f"check.{key}", str(exc))
    for key in ("failure_threshold", "success_threshold"):
        if key in check:
            value = check.pop(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                _problem(problems, f"check.{key}", f"must be a positive integer, got {value!r}")
            else:
                common[key] = value
    if "timeout" in common:
        # The kind validates its own bound on the timeout (e.g. http: at most 300 s) and keeps it.
        check["timeout"] = common["timeout"]
    registry = default_registry()
    if kind not in registry.kinds():
        _problem(
            problems, "check.kind", f"unknown kind {kind!r}; known: {', '.join(sorted(registry.kinds()))}"
        )
    else:
        try:
            params = registry.validate(kind, check)
        except ValueError as exc:
            for line in getattr(exc, "errors", None) or [str(exc)]:
                problems.append(line if line.startswith("check.") else f"check.{line}")
            params = {}
        else:
            # The probe only ever sees what the kind's validator returned: a key it did not return
            # (a typo, a parameter of another kind) would be stored and silently ignored.
            aliases = set(getattr(registry.get(kind), "aliases", ()))
            for key in sorted(set(check) - set(params) - aliases):
                _problem(problems, f"check.{key}", f"unknown parameter for {kind} checks")
    if problems:
        raise ValidationFailed("invalid check", details={"problems": problems})
    # The common keys win over a kind's defaults (a kind returns "timeout": None when none was given).
    document = {"kind": kind, **params, **common}
    if document.get("timeout") is None:
        document.pop("timeout", None)
    return document


def validate_recovery(recovery: dict[str, Any] | None, registry) -> dict[str, Any] | None:
    """Normalise a recovery policy: ordered strategies plus budgets and switches. ``registry``: the
    strategies as the settings being validated configure them (the running guard's, on the API path)."""
    if recovery is None:
        return None
    problems: list[str] = []
    unknown = set(recovery) - POLICY_KEYS
    for key in sorted(unknown):
        _problem(problems, f"recovery.{key}", "unknown key")
    policy: dict[str, Any] = {k: v for k, v in recovery.items() if k in POLICY_KEYS}
    strategies = policy.get("strategies", [])
    if not isinstance(strategies, list):
        _problem(problems, "recovery.strategies", "must be a list of {kind, ...} objects")
        strategies = []
    normalised = []
    for i, strategy in enumerate(strategies):
        if not isinstance(strategy, dict) or not isinstance(strategy.get("kind"), str):
            _problem(problems, f"recovery.strategies[{i}]", "must be an object with a 'kind'")
            continue
        normalised.append(dict(strategy))
    # Each strategy kind validates its own parameters (argv, URL, Kubernetes names...).
    from app.healing.policy import normalise_strategies

    policy["strategies"], strategy_problems = normalise_strategies(normalised, registry)
    problems.extend(strategy_problems)
    for key in _POLICY_DURATIONS & set(policy):
        try:
            policy[key] = parse_duration(policy[key])
            if policy[key] < 0:
                raise ValueError(f"must not be negative, got {policy[key]:g}")
        except ValueError as exc:
            _problem(problems, f"recovery.{key}", str(exc))
    for key in ("max_attempts", "breaker_threshold"):
        if key in policy and (
            not isinstance(policy[key], int) or isinstance(policy[key], bool) or policy[key] < 1
        ):
            _problem(problems, f"recovery.{key}", f"must be a positive integer, got {policy[key]!r}")
    for key in ("dry_run", "require_approval", "learned_ordering"):
        if key in policy and not isinstance(policy[key], bool):
            _problem(problems, f"recovery.{key}", f"must be true or false, got {policy[key]!r}")
    if "heal_on" in policy:
        from app.healing.lifecycle import normalise_heal_on

        try:
            policy["heal_on"] = normalise_heal_on(policy["heal_on"])
        except ValueError as exc:
            _problem(problems, "recovery.heal_on", str(exc))
    if problems:
        raise ValidationFailed("invalid recovery policy", details={"problems": problems})
    return policy
