"""A component's recovery policy: the ``recovery`` document, validated and with defaults filled in.

The registry (``app/components/specs.py``) normalises the common keys; ``normalise_strategies`` is
the per-strategy half it calls, so a bad ``argv`` or URL is refused when the component is saved, not
when the component is already down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.healing.strategies.base import StrategyConfigError

DEFAULTS: dict[str, Any] = {
    "max_attempts": 3,
    "backoff_initial": 10.0,
    "backoff_max": 300.0,
    "cooldown": 300.0,
    "breaker_threshold": 3,
    "breaker_window": 3600.0,
    "verify_timeout": 60.0,
    "grace_period": 30.0,
    "approval_timeout": 900.0,
    "dry_run": False,
    "require_approval": False,
    "learned_ordering": False,
    "heal_on": ["critical", "failed"],  # lifecycle.DEFAULT_HEAL_ON; degraded is opt-in
}
DEFAULT_ACTION_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class StrategyEntry:
    index: int  # position in the admin's list: identifies the entry in stats and attempt records
    kind: str
    params: dict[str, Any]
    timeout_s: float = DEFAULT_ACTION_TIMEOUT_S

    @property
    def key(self) -> str:
        return f"{self.index}:{self.kind}"


@dataclass(frozen=True)
class Policy:
    strategies: list[StrategyEntry] = field(default_factory=list)
    max_attempts: int = 3
    backoff_initial: float = 10.0
    backoff_max: float = 300.0
    cooldown: float = 300.0
    breaker_threshold: int = 3
    breaker_window: float = 3600.0
    verify_timeout: float = 60.0
    grace_period: float = 30.0
    approval_timeout: float = 900.0
    dry_run: bool = False
    require_approval: bool = False
    learned_ordering: bool = False
    heal_on: tuple[str, ...] = ("critical", "failed")


def backoff_delay(level: int, initial: float, cap: float) -> float:
    """Delay after the ``level``-th consecutive failure (1-based): initial · 2^(level-1), capped."""
    if level <= 0:
        return 0.0
    return min(cap, initial * (2 ** min(level - 1, 30)))


def _entry_params(entry: dict[str, Any]) -> tuple[dict[str, Any], float | None]:
    entry = dict(entry)
    entry.pop("kind")
    timeout = entry.pop("action_timeout", None)
    if "params" in entry:
        params = entry.pop("params")
        if entry:
            raise StrategyConfigError(min(entry), "put strategy parameters inside 'params'")
        if not isinstance(params, dict):
            raise StrategyConfigError("params", "must be a mapping")
        return dict(params), timeout
    if "workload_kind" in entry:  # flat form for kubernetes: 'kind' already names the strategy
        entry["kind"] = entry.pop("workload_kind")
    return entry, timeout


def normalise_strategies(
    strategies: list[dict[str, Any]], registry
) -> tuple[list[dict[str, Any]], list[str]]:
    """Validate each ``{kind, params | flat params, action_timeout?}`` with ``registry`` (the runtime's,
    or the one ``config validate`` builds); return normalised entries and
    ``"recovery.strategies[i].field: reason"`` problems."""
    from app.healing.strategies.registry import UnknownStrategy

    problems: list[str] = []
    out: list[dict[str, Any]] = []
    for i, entry in enumerate(strategies):
        where = f"recovery.strategies[{i}]"
        try:
            strategy = registry.get(entry["kind"])
            params, timeout = _entry_params(entry)
            normalised = {"kind": strategy.kind, "params": strategy.validate(params)}
            if timeout is not None:
                if (
                    isinstance(timeout, bool)
                    or not isinstance(timeout, int | float)
                    or not 0 < timeout <= 3600
                ):
                    raise StrategyConfigError("action_timeout", "must be a number of seconds in (0, 3600]")
                normalised["action_timeout"] = float(timeout)
            out.append(normalised)
        except UnknownStrategy as exc:
            problems.append(f"{where}.kind: {exc}")
        except StrategyConfigError as exc:
            problems.append(f"{where}.{exc.field}: {exc.reason}")
    return out, problems


def allowed_entries(policy: Policy, settings: Any, registry: Any) -> list[StrategyEntry]:
    """The policy's entries whose kind is enabled in ``healing.strategies``, in the admin's order."""
    allowed = {registry.canonical(k) for k in settings.healing.strategies}
    return [e for e in policy.strategies if registry.canonical(e.kind) in allowed]


def parse_policy(recovery: dict[str, Any] | None, settings: Any = None) -> Policy:
    """The effective policy of a (stored, already normalised) recovery document."""
    doc = dict(DEFAULTS)
    doc.update({k: v for k, v in (recovery or {}).items() if k in DEFAULTS and v is not None})
    healing = getattr(settings, "healing", None)
    if healing is not None:
        doc["dry_run"] = bool(doc["dry_run"] or healing.dry_run)
        doc["require_approval"] = bool(doc["require_approval"] or healing.require_approval)
    entries = []
    for i, raw in enumerate((recovery or {}).get("strategies", [])):
        params = raw.get("params")
        if params is None:  # not normalised (e.g. a test handing a flat document)
            params, _ = _entry_params(raw)
        entries.append(
            StrategyEntry(
                i, raw["kind"], dict(params), float(raw.get("action_timeout", DEFAULT_ACTION_TIMEOUT_S))
            )
        )
    doc["heal_on"] = tuple(doc["heal_on"])
    return Policy(strategies=entries, **{k: doc[k] for k in DEFAULTS})
