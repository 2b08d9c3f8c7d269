"""Rules declared in the config file (``rules:``), synced at the rule evaluator's start.

Declared rules are created or updated by name with ``source: config`` (the API then refuses to
change them with a 409); config rules no longer declared are disabled, never deleted (their
anomalies keep pointing at them). A change bumps the rule's version, which restarts its state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from app.db.models import DetectionRule
from app.db.session import session_scope
from app.detection.rules_schemas import RuleCreate
from app.detection.rules_service import SOURCE_CONFIG, check_params

if TYPE_CHECKING:
    from app.detection.evaluator import RuleEvaluator
    from app.platform.core import Core


async def sync_declared_rules(state: Core, evaluator: RuleEvaluator) -> dict[str, list[str]]:
    report: dict[str, list[str]] = {"created": [], "updated": [], "disabled": []}
    declared = {d.name: RuleCreate.model_validate(d.model_dump()) for d in state.settings.rules}
    async with session_scope(state.sessionmaker) as session:
        existing = {r.name: r for r in (await session.execute(select(DetectionRule))).scalars()}
        for name, data in declared.items():
            wanted = {
                "component": data.component,
                "metric_name": data.metric_name,
                "labels": data.labels,
                "kind": data.kind,
                "params": check_params(data.kind, data.params),
                "severity": data.severity,
                "enabled": data.enabled,
                "source": SOURCE_CONFIG,
            }
            rule = existing.get(name)
            if rule is None:
                session.add(DetectionRule(name=name, **wanted))
                report["created"].append(name)
                continue
            changed = {k: v for k, v in wanted.items() if getattr(rule, k) != v}
            if changed:
                for key, value in changed.items():
                    setattr(rule, key, value)
                rule.version += 1
                report["updated"].append(name)
        for name, rule in existing.items():
            if name not in declared and rule.source == SOURCE_CONFIG and rule.enabled:
                rule.enabled = False
                rule.version += 1
                report["disabled"].append(name)
        await session.flush()
    if any(report.values()):
        evaluator.rules_changed()
    return report
