"""What the config file declares (``components:``, ``channels:``, ``rules:``), checked with each
domain's own rules.

Each declaration goes through exactly what the API applies to the same object (a component's name,
labels, check and recovery policy; a channel kind's configuration; a rule's parameters), so a
declaration that the guard would refuse at start-up fails ``config validate`` and stops ``serve``
instead of vanishing with a log line. The settings' own shapes are checked before, by pydantic
(``settings.py``, ``sections.py``): this module is the only part of the configuration that knows the
domains, and nothing below it imports it.
"""

from __future__ import annotations

from pydantic import ValidationError

from app.components.schemas import ComponentCreate
from app.components.specs import validate_check, validate_recovery
from app.config.settings import Settings
from app.core.errors import ValidationFailed
from app.detection.rules_schemas import RuleCreate
from app.detection.rules_service import check_params
from app.healing.strategies.registry import StrategyRegistry
from app.notify.channels import channel_kind


def declared_problems(settings: Settings) -> list[str]:
    """Every problem of every declaration, one ``where: message`` line each."""
    return channel_problems(settings) + rule_problems(settings) + component_problems(settings)


def channel_problems(settings: Settings) -> list[str]:
    """A declared channel's kind must exist and its ``config`` pass that kind's validation."""
    problems = []
    for index, decl in enumerate(settings.channels):
        try:
            kind = channel_kind(decl.kind)  # ValueError names the known kinds
            kind.validate(decl.config)
        except ValidationError as exc:
            problems.append(
                f"channels.{index}: "
                + "; ".join(f"config.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            )
        except ValueError as exc:
            problems.append(f"channels.{index}: {exc}")
    return problems


def rule_problems(settings: Settings) -> list[str]:
    """A declared rule must pass the API's own checks (``RuleCreate`` and the kind's parameters)."""
    problems = []
    for index, decl in enumerate(settings.rules):
        try:
            data = RuleCreate.model_validate(decl.model_dump())
            check_params(data.kind, data.params)
        except ValidationFailed as exc:
            problems.append(
                f"rules.{index}: " + "; ".join(f"{f['field']}: {f['message']}" for f in exc.details["fields"])
            )
        except ValueError as exc:  # a pydantic ValidationError is one
            problems.append(f"rules.{index}: {exc}")
    return problems


def component_problems(settings: Settings) -> list[str]:
    """Every problem of every declared component, as ``components[i] (name).path: message`` lines."""
    # The strategies as *these* settings configure them (SSRF allowlist, command actions), not the
    # process-wide registry of whatever guard ran last in this process.
    registry = StrategyRegistry(settings)

    problems: list[str] = []
    for index, decl in enumerate(settings.components):
        where = f"components[{index}] ({decl.name})"
        try:
            ComponentCreate.declared(decl)
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
