"""Detection rules CRUD, anomaly listing and baselines. Only flushes; the caller owns the transaction."""

from __future__ import annotations

import builtins
import math
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, NotFound, ValidationFailed
from app.db.models import DetectionRule, MetricAnomaly, RuleState
from app.detection.anomaly import AnomalyDetector
from app.detection.rules_schemas import RuleCreate, RuleParams, RuleUpdate

if TYPE_CHECKING:
    from app.config.settings import Settings
    from app.detection.evaluator import RuleEvaluator


SOURCE_CONFIG = "config"


def check_params(kind: str, params: RuleParams) -> dict[str, Any]:
    problems = []
    if kind == "threshold":
        if params.operator is None:
            problems.append({"field": "params.operator", "message": "required for threshold rules"})
        if params.value is None:
            problems.append({"field": "params.value", "message": "required for threshold rules"})
    elif kind == "absent" and params.for_seconds <= 0:
        problems.append(
            {
                "field": "params.for",
                "message": "required for absent rules: how long without a point before it fires, e.g. 10m",
            }
        )
    elif kind == "trend" and params.value is None:
        problems.append(
            {"field": "params.value", "message": "required for trend rules (the level to predict)"}
        )
    if params.value is not None and not math.isfinite(params.value):
        problems.append({"field": "params.value", "message": "must be finite"})
    if problems:
        raise ValidationFailed("the rule is not valid", details={"fields": problems})
    return params.model_dump()


class RuleService:
    def __init__(self, session: AsyncSession, settings: Settings, evaluator: RuleEvaluator):
        """``evaluator``: told when a rule changes (it reloads them on its next pass)."""
        self.session = session
        self.settings = settings
        self.evaluator = evaluator

    def _changed(self, rule: DetectionRule) -> None:
        """The evaluator is told once the change is committed (told earlier, its next pass could load
        the rules without it and not look again)."""
        evaluator, series = self.evaluator, (rule.component, rule.metric_name)
        event.listen(
            self.session.sync_session,
            "after_commit",
            lambda _session: evaluator.rules_changed(series),
            once=True,
        )

    async def get(self, rule_id: int) -> DetectionRule:
        rule = await self.session.get(DetectionRule, rule_id)
        if rule is None:
            raise NotFound(f"rule {rule_id} not found")
        return rule

    async def list(self, component: str | None = None) -> list[DetectionRule]:
        q = select(DetectionRule).order_by(DetectionRule.id)
        if component is not None:
            q = q.where(DetectionRule.component == component)
        return list((await self.session.execute(q)).scalars())

    async def create(self, data: RuleCreate) -> DetectionRule:
        if (
            await self.session.execute(select(DetectionRule.id).where(DetectionRule.name == data.name))
        ).first():
            raise Conflict(f"rule {data.name!r} already exists")
        rule = DetectionRule(
            name=data.name,
            component=data.component,
            metric_name=data.metric_name,
            labels=data.labels,
            kind=data.kind,
            params=check_params(data.kind, data.params),
            severity=data.severity,
            enabled=data.enabled,
            heal=data.heal,
        )
        self.session.add(rule)
        await self.session.flush()
        self._changed(rule)
        return rule

    @staticmethod
    def _refuse_config_owned(rule: DetectionRule) -> None:
        if rule.source == SOURCE_CONFIG:
            raise Conflict(
                f"rule {rule.name!r} is declared in the configuration file; edit it there",
                details={"source": SOURCE_CONFIG},
            )

    async def update(self, rule_id: int, data: RuleUpdate) -> DetectionRule:
        rule = await self.get(rule_id)
        self._refuse_config_owned(rule)
        changes = data.model_dump(exclude_unset=True)
        if "params" in changes and data.params is not None:
            rule.params = check_params(rule.kind, data.params)
        for key in ("labels", "severity", "enabled", "heal"):
            if changes.get(key) is not None:
                setattr(rule, key, changes[key])
        rule.version += 1  # the evaluator restarts this rule's state from scratch
        await self.session.flush()
        self._changed(rule)
        return rule

    async def delete(self, rule_id: int) -> None:
        rule = await self.get(rule_id)
        self._refuse_config_owned(rule)
        await self.session.delete(rule)
        await self.session.flush()
        self._changed(rule)

    async def anomalies(
        self, *, active: bool | None, component: str | None, limit: int, offset: int
    ) -> builtins.list[MetricAnomaly]:
        q = select(MetricAnomaly).order_by(MetricAnomaly.id.desc())
        if component is not None:
            q = q.where(MetricAnomaly.component == component)
        if active is not None:
            q = q.where(
                MetricAnomaly.cleared_at.is_(None) if active else MetricAnomaly.cleared_at.is_not(None)
            )
        return list((await self.session.execute(q.limit(limit).offset(offset))).scalars())

    async def baselines(self, component: str | None = None) -> builtins.list[dict[str, Any]]:
        q = (
            select(RuleState, DetectionRule)
            .join(DetectionRule, DetectionRule.id == RuleState.rule_id)
            .where(DetectionRule.kind == "anomaly")
            .order_by(DetectionRule.id, RuleState.series_key)
        )
        if component is not None:
            q = q.where(DetectionRule.component == component)
        out = []
        for state, rule in (await self.session.execute(q)).all():
            inner = (state.state or {}).get("eval")
            baseline: dict[str, Any] = {}
            if inner:
                baseline = AnomalyDetector.from_state(inner).baseline()
                baseline = {
                    k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                    for k, v in baseline.items()
                }
            out.append(
                {
                    "rule_id": rule.id,
                    "rule_name": rule.name,
                    "component": rule.component,
                    "metric_name": rule.metric_name,
                    "labels": state.labels,
                    "firing": state.firing,
                    "last_ts": state.last_ts,
                    "baseline": baseline,
                }
            )
        return out
