"""PromQL expressions of the Grafana dashboard, with Grafana's variables replaced by concrete values.

Used by the dashboard test (promtool parses every expression) and by the live-Prometheus test (every
panel's expression must return data from a guard that Prometheus scraped):

    from tests.deploy.grafana_exprs import panel_exprs   # or a relative import inside tests/deploy
    for title, expr in panel_exprs():
        ...
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards" / "pipeline-guard.json"

# What Grafana would put in place of the variables; `component` is the "All" value (allValue).
DEFAULT_VARIABLES: dict[str, str] = {
    "component": ".*",
    "job": "pipeline-guard",
    "datasource": "prometheus",
    "__rate_interval": "2m",
    "__interval": "30s",
    "__range": "1h",
}

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def load_dashboard(path: Path | str = DASHBOARD) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def iter_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in (collapsed) rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def substitute(expr: str, variables: Mapping[str, str] | None = None) -> str:
    """Replace `$var`, `${var}`, `${var:format}` and `[[var]]`; an unknown variable is an error."""
    values = {**DEFAULT_VARIABLES, **(variables or {})}

    def replace(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name not in values:
            raise KeyError(f"no value for Grafana variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(replace, expr)


def panel_exprs(
    path: Path | str = DASHBOARD, variables: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every non-row panel, variables substituted."""
    result = []
    for panel in iter_panels(load_dashboard(path)):
        if panel.get("type") == "row":
            continue
        for target in panel.get("targets", []):
            expr = target.get("expr", "")
            if expr.strip() and not target.get("hide"):
                result.append((panel["title"], substitute(expr, variables)))
    return result
