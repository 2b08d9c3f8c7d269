"""``notify_only``: act on nothing, escalate to a human. Its attempt always "fails" so the engine
records that a person is needed and never believes the component was healed."""

from __future__ import annotations

from typing import Any, ClassVar

from app.healing.strategies.base import ActionContext, ActionResult, Strategy, StrategyConfigError


class NotifyOnlyStrategy(Strategy):
    kind: ClassVar[str] = "notify_only"
    escalates: ClassVar[bool] = True

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(params) - {"message"})
        if unknown:
            raise StrategyConfigError(unknown[0], "unknown parameter")
        message = params.get("message", "")
        if not isinstance(message, str) or len(message) > 500:
            raise StrategyConfigError("message", "must be a string of at most 500 characters")
        return {"message": message}

    def describe(self, params: dict[str, Any]) -> str:
        return "notify a human without acting" + (f": {params['message']}" if params.get("message") else "")

    async def execute(self, ctx: ActionContext) -> ActionResult:  # noqa: ARG002 - Strategy interface
        return ActionResult(False, "no automatic action: a human was notified", data={"escalated": True})
