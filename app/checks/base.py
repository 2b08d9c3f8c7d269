"""What every check kind shares: the outcome vocabulary, the result, the run context, config
errors, and `guarded_run`, which makes sure a check never raises and never overruns."""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from app.core.deadlines import lenient_timeout

if TYPE_CHECKING:
    import aiohttp

    from app.checks.heartbeat import HeartbeatState

log = logging.getLogger(__name__)

# Slack on top of ctx.timeout for the hard cap in guarded_run: a kind's own timeout should fire
# first and produce the more precise message, and it may need a moment to clean up afterwards
# (a command check's SIGTERM grace and pipe drain take up to ~2 s).
HARD_CAP_SLACK_S = 3.0
DETAIL_MAX_CHARS = 300


class Outcome(StrEnum):
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"


def utcnow() -> datetime:
    return datetime.now(UTC)


def short(text: str, limit: int = DETAIL_MAX_CHARS) -> str:
    """One line, at most `limit` characters (details end up in lists and notifications)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class CheckResult:
    outcome: Outcome
    latency_s: float | None
    detail: str  # short, human, never contains secrets
    observed_at: datetime = field(default_factory=utcnow)
    metrics: dict[str, float] = field(default_factory=dict)
    # The watched thing itself reported the failure (a job's `fail` ping, a non-zero exit code): no
    # streak of failed checks is needed to believe it, the component is unhealthy at once.
    conclusive: bool = False
    # No verdict yet: the run a recovery action started has not said how it ended (it is running, or
    # has not pinged since the action). Stored like any result; it changes no status, streak or flap
    # window, so it neither verifies nor fails the action (docs/LIFECYCLE.md rule 12).
    pending: bool = False

    @classmethod
    def up(cls, detail: str, latency_s: float | None = None, **kw: Any) -> CheckResult:
        return cls(Outcome.UP, latency_s, short(detail), **kw)

    @classmethod
    def degraded(cls, detail: str, latency_s: float | None = None, **kw: Any) -> CheckResult:
        return cls(Outcome.DEGRADED, latency_s, short(detail), **kw)

    @classmethod
    def down(cls, detail: str, latency_s: float | None = None, **kw: Any) -> CheckResult:
        return cls(Outcome.DOWN, latency_s, short(detail), **kw)


class CheckConfigError(ValueError):
    """Invalid check parameters. `errors` holds one "path: message" string per bad field."""

    def __init__(self, errors: str | list[str]) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("; ".join(self.errors))


@dataclass
class CheckContext:
    """What the scheduler hands to a check run. Secrets in params are already decrypted."""

    timeout: float = 10.0
    http_session: aiohttp.ClientSession | None = None
    commands_enabled: bool = False
    # Executables a command check may run: absolute paths or bare names looked up on PATH.
    # Empty means any executable (only when commands_enabled).
    command_allowlist: list[str] = field(default_factory=list)
    # Module prefixes (e.g. "mycompany.checks") from which `plugin` checks may import callables,
    # besides those published through the `pipeline_guard.plugins` entry-point group.
    plugin_module_allowlist: list[str] = field(default_factory=list)
    # For push-based kinds (heartbeat): the stored ping state of the component.
    heartbeat: HeartbeatState | None = None
    now: datetime | None = None  # evaluation time override (tests, replays)


class ConfigErrors:
    """Collects per-field errors so validate() can report all of them at once."""

    def __init__(self, prefix: str = "check") -> None:
        self.prefix = prefix
        self.errors: list[str] = []

    def add(self, name: str, message: str) -> None:
        self.errors.append(f"{self.prefix}.{name}: {message}")

    def raise_if_any(self) -> None:
        if self.errors:
            raise CheckConfigError(self.errors)


def require_mapping(params: Any) -> dict[str, Any]:
    if not isinstance(params, Mapping):
        raise CheckConfigError("check: parameters must be an object")
    return dict(params)


def opt_number(
    errs: ConfigErrors,
    params: Mapping[str, Any],
    name: str,
    *,
    default: float | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    integer: bool = False,
) -> Any:
    value = params.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        errs.add(name, "must be a number")
        return default
    if integer and value != int(value):
        errs.add(name, "must be an integer")
        return default
    if minimum is not None and value < minimum:
        errs.add(name, f"must be >= {minimum:g}")
    if maximum is not None and value > maximum:
        errs.add(name, f"must be <= {maximum:g}")
    return int(value) if integer else float(value)


def effective_timeout(params: Mapping[str, Any], ctx: CheckContext) -> float:
    """A per-check `timeout` may tighten, never loosen, the scheduler's timeout."""
    own = params.get("timeout")
    return min(float(own), ctx.timeout) if own else ctx.timeout


class CheckKind(ABC):
    """A way of observing a component. Subclasses implement validate() and probe();
    run() is the entry point the scheduler calls and never raises."""

    name: ClassVar[str]
    # Push-based kinds (heartbeat) are evaluated from stored pings, not probed on a schedule.
    passive: ClassVar[bool] = False
    # Kinds that bound their whole probe by its timeout themselves (built-in http, tcp): the
    # scheduler skips its own safety cap around them (one timer per probe instead of two).
    self_bounded: ClassVar[bool] = False

    @abstractmethod
    def validate(self, params: Mapping[str, Any], ctx: CheckContext | None = None) -> dict[str, Any]:
        """Normalised params, or CheckConfigError. With `ctx`, also apply the admin policy
        (e.g. command checks disabled)."""

    @abstractmethod
    async def probe(self, params: dict[str, Any], ctx: CheckContext) -> CheckResult:
        """Observe once, with already validated params. May raise; run() turns it into DOWN."""

    def redact(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Params safe to log or show (secrets masked)."""
        return dict(params)

    async def run(self, params: Mapping[str, Any], ctx: CheckContext) -> CheckResult:
        return await guarded_run(self, params, ctx)


async def guarded_run(kind: Any, params: Mapping[str, Any], ctx: CheckContext) -> CheckResult:
    """Validate, probe under a hard time cap, and turn every failure into a DOWN result.
    Works for any object with validate()/probe() (third-party kinds included)."""
    name = getattr(kind, "name", type(kind).__name__)
    started = time.monotonic()
    try:
        validated = kind.validate(params, ctx)
        async with lenient_timeout(ctx.timeout + HARD_CAP_SLACK_S):
            result = await kind.probe(validated, ctx)
    except CheckConfigError as exc:
        return CheckResult.down(f"invalid check configuration: {exc}")
    except TimeoutError:
        return CheckResult.down(f"timeout after {ctx.timeout:g}s", time.monotonic() - started)
    except Exception as exc:  # a check must never take the scheduler down
        # The message may contain params (secrets); log the type and traceback, show the type only.
        log.error("check kind %r failed unexpectedly: %s", name, type(exc).__name__)
        log.debug("traceback of the failed %r check", name, exc_info=True)
        return CheckResult.down(f"check {name!r} failed: internal error ({type(exc).__name__})")
    if not isinstance(result, CheckResult):
        return CheckResult.down(f"check {name!r} returned no result")
    return result
