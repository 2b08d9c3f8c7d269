"""Validation of the components declared in the config file (``components:``).

Each declaration goes through exactly what the API applies to a component (name and labels, the
check kind's own validation, the recovery policy's), so a declaration that the guard would refuse
at start-up fails ``config validate`` and stops ``serve`` instead of vanishing with a log line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.config.settings import Settings


def declared_component_problems(settings: Settings) -> list[str]:
    """Every problem of every declared component, as ``components[i] (name).path: message`` lines."""
    from pydantic import ValidationError

    from app.components.schemas import ComponentCreate
    from app.components.specs import validate_check, validate_recovery
    from app.core.errors import ValidationFailed
    from app.healing.strategies.registry import StrategyRegistry

    # The strategies as *these* settings configure them (SSRF allowlist, command actions), not the
    # process-wide registry of whatever guard ran last in this process.
    registry = StrategyRegistry(settings)

    problems: list[str] = []
    for index, decl in enumerate(settings.components):
        where = f"components[{index}] ({decl.name})"
        try:
            ComponentCreate(
                name=decl.name,
                description=decl.description,
                endpoint=decl.endpoint,
                critical=decl.critical,
                labels=decl.labels,
                check=decl.check,
                recovery=decl.recovery,
                enabled=decl.enabled,
            )
        except ValidationError as exc:
            for error in exc.errors():
                field = ".".join(str(p) for p in error["loc"])
                problems.append(f"{where}.{field}: {error['msg'].removeprefix('Value error, ')}")
        for validate, document in (
            (validate_check, decl.check),
            (lambda doc: validate_recovery(doc, registry), decl.recovery),
        ):
            try:
                validate(document)
            except ValidationFailed as exc:
                problems.extend(f"{where}.{line}" for line in exc.details.get("problems") or [exc.message])
    return problems
