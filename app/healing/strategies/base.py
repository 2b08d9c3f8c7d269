"""The contract every recovery strategy implements.

The healing engine owns policy, budgets and persistence; a strategy only knows how to check its
parameters (``validate``, at config time), say what it would do (``describe``, for dry-run records)
and do it once (``execute``). ``execute`` reports failure as a result, never as an exception, so one
broken strategy cannot take the engine's loop down; ``run_bounded`` enforces that (and the time limit)
for strategies that forget.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from app.core.deadlines import lenient_timeout

# Attempt records are kept in the database and shown in the UI: a few KiB is enough to diagnose,
# and keeps a chatty action from bloating every row (Monit keeps 512 B).
MAX_OUTPUT_CHARS = 4096


class StrategyConfigError(ValueError):
    """Invalid strategy parameters; the message reads ``"field: reason"``."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


@dataclass(frozen=True)
class ActionContext:
    """Everything a strategy may know about the attempt it executes."""

    component: str
    labels: dict[str, str]
    incident_id: str  # stable across retries and guard restarts: the idempotency key
    attempt_id: int
    attempt_number: int  # 1-based within the incident
    params: dict[str, Any]  # the output of this strategy's validate()
    dry_run: bool = False
    timeout_s: float = 60.0
    # Optional so callers that do not know it still work; strategies that need a deterministic,
    # time-like value per incident (Kubernetes restartedAt) use it when present.
    incident_started_at: datetime | None = None
    # Strategies that start a process call this with its pid (the leader of its own process group)
    # as soon as it runs, so the engine can record it and a reconciler can kill it after a crash.
    on_process: Callable[[int], None] | None = None


@dataclass
class ActionResult:
    success: bool
    detail: str  # one short human sentence; never contains secrets
    output: str = ""  # capped to MAX_OUTPUT_CHARS
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.output = cap_output(self.output)


def cap_output(text: str, limit: int = MAX_OUTPUT_CHARS) -> str:
    """Keep the tail: the end of a log usually holds the error that matters."""
    if len(text) <= limit:
        return text
    marker = f"[... {len(text) - limit} chars truncated ...]\n"
    return marker + text[-limit:]


class Strategy(ABC):
    """One kind of recovery action. Instances hold no per-attempt state and may be shared."""

    kind: ClassVar[str]

    @abstractmethod
    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        """Return normalized params (defaults filled in) or raise StrategyConfigError."""

    @abstractmethod
    async def execute(self, ctx: ActionContext) -> ActionResult:
        """Perform the action once for ``ctx``; report errors as ``ActionResult(success=False)``."""

    def describe(self, params: dict[str, Any]) -> str:
        """What ``execute`` would do with these (validated) params, for dry-run and approval records."""
        return f"{self.kind} {params}"


async def run_bounded(strategy: Strategy, ctx: ActionContext) -> ActionResult:
    """Execute with the context's time limit and turn any escaped exception into a failed result.

    The engine calls this rather than ``execute`` directly: it is the single place where dry-run,
    timeout and the no-exception contract are guaranteed, whatever the strategy does.
    """
    if ctx.dry_run:
        return ActionResult(
            success=True,
            detail=f"dry-run: would {strategy.describe(ctx.params)}",
            data={"dry_run": True},
        )
    try:
        # Lenient like the command's and the webhook's own timeouts inside it: the guard's own
        # lateness must not turn an action that finished meanwhile into a timed-out one.
        async with lenient_timeout(ctx.timeout_s):
            return await strategy.execute(ctx)
    except TimeoutError:
        return ActionResult(success=False, detail=f"{strategy.kind} timed out after {ctx.timeout_s:g} s")
    except Exception as exc:  # noqa: BLE001 - the contract is "never raise"; the type is the detail
        return ActionResult(
            success=False, detail=f"{strategy.kind} failed unexpectedly: {type(exc).__name__}"
        )
