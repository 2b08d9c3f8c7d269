"""Component registry rules: unique names, validated check/recovery, config-owned components."""

from __future__ import annotations

import builtins
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.components import graph
from app.components.repository import ComponentRepository
from app.components.schemas import ComponentCreate, ComponentUpdate
from app.components.specs import validate_check, validate_recovery
from app.core.errors import Conflict, NotFound
from app.db.models import Component
from app.security.check_secrets import seal_check
from app.security.recovery_secrets import seal_recovery

SOURCE_API = "api"
SOURCE_CONFIG = "config"


class ComponentService:
    """``box``: the app's SecretBox (check credentials are stored encrypted); ``registry``: the
    runtime's strategy registry, which validates recovery policies."""

    def __init__(self, session: AsyncSession, box: Any, registry: Any):
        self.repo = ComponentRepository(session)
        self.box = box
        self.registry = registry

    def seal(self, check: dict[str, Any] | None, previous: dict[str, Any] | None) -> dict[str, Any] | None:
        return seal_check(validate_check(check), previous, self.box)

    async def get(self, name: str) -> Component:
        component = await self.repo.by_name(name)
        if component is None:
            raise NotFound(f"component {name!r} not found")
        return component

    async def list(self, **filters: Any) -> tuple[list[Component], int]:
        return await self.repo.list(**filters)

    async def create(
        self, data: ComponentCreate, *, source: str = SOURCE_API, check_graph: bool = True
    ) -> Component:
        """``check_graph=False``: the caller validated the whole graph itself (the config file's sync
        creates components in any order)."""
        if await self.repo.by_name(data.name) is not None:
            raise Conflict(f"component {data.name!r} already exists")
        component = Component(
            name=data.name,
            description=data.description,
            endpoint=data.endpoint,
            critical=data.critical,
            labels=data.labels,
            region=data.labels.get("region"),
            check=self.seal(data.check, None),
            recovery=validate_recovery(seal_recovery(data.recovery, None, self.box), self.registry),
            enabled=data.enabled,
            depends_on=await self._checked_dependencies(data.name, data.depends_on, check_graph),
            source=source,
        )
        return await self.repo.add(component)

    async def update(self, name: str, data: ComponentUpdate, *, source: str = SOURCE_API) -> Component:
        component = await self.get(name)
        self._refuse_config_owned(component, source)
        changes = data.model_dump(exclude_unset=True)
        if "check" in changes:
            changes["check"] = self.seal(changes["check"], component.check)
        if "recovery" in changes:
            changes["recovery"] = validate_recovery(
                seal_recovery(changes["recovery"], component.recovery, self.box), self.registry
            )
        if "depends_on" in changes:
            changes["depends_on"] = await self._checked_dependencies(name, changes["depends_on"] or [], True)
        for key, value in changes.items():
            setattr(component, key, value)
        if "labels" in changes:
            component.region = (changes["labels"] or {}).get("region")
        if changes:
            component.version += 1
        await self.repo.session.flush()
        return component

    async def delete(self, name: str, *, source: str = SOURCE_API) -> Component:
        component = await self.get(name)
        self._refuse_config_owned(component, source)
        dependents = sorted(n for n, deps in (await self.dependency_graph()).items() if name in deps)
        if dependents:
            raise Conflict(
                f"component {name!r} is needed by {', '.join(dependents)}; remove it from their "
                "depends_on first",
                details={"dependents": dependents},
            )
        await self.repo.delete(component)
        return component

    async def dependency_graph(self) -> dict[str, builtins.list[str]]:
        rows = (await self.repo.session.execute(select(Component.name, Component.depends_on))).all()
        return {name: list(deps or []) for name, deps in rows}

    async def _checked_dependencies(
        self, name: str, depends_on: builtins.list[str], check_graph: bool
    ) -> builtins.list[str]:
        """The list, cleaned; a 422 naming the unknown component or the cycle it would close."""
        try:
            deps = graph.normalise(depends_on)
        except ValueError as exc:
            graph.invalid([f"{name}.{exc}"])
        if check_graph and deps:
            current = await self.dependency_graph()
            current[name] = deps
            graph.check(current)
        return deps

    @staticmethod
    def _refuse_config_owned(component: Component, source: str) -> None:
        if component.source == SOURCE_CONFIG and source != SOURCE_CONFIG:
            raise Conflict(
                f"component {component.name!r} is declared in the configuration file; edit it there "
                "(the API cannot change config-declared components)",
                details={"source": SOURCE_CONFIG},
            )
