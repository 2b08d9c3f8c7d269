"""Alert fingerprints: the key that makes repeated raises one alert (deduplication).

A component's health (its transitions and the incident they open) is one alert,
``health:<component>``; an anomaly is one per component, metric, rule and label set. Healing reads
and releases health alerts by the same key, so it lives here, apart from the subscribers that raise
them.
"""

from __future__ import annotations

import json


def health_fingerprint(component: str) -> str:
    return f"health:{component}"


def anomaly_fingerprint(
    component: str, metric: str, rule_id: int | None, rule_kind: str, labels: dict[str, str]
) -> str:
    rule = rule_id if rule_id is not None else rule_kind
    key = json.dumps(labels or {}, sort_keys=True, separators=(",", ":"))
    return f"anomaly:{component}:{metric}:{rule}:{key}"[:200]
