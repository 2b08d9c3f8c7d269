"""Components declared in the config file (`components:`), synced at startup.

Declared components are created or updated with source="config" (the API then refuses to edit them
with a 409); config components no longer declared are disabled, never deleted (their history stays).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from app.components.schemas import ComponentCreate
from app.components.service import SOURCE_CONFIG, ComponentService
from app.components.specs import validate_check, validate_recovery
from app.db.models import Component
from app.db.session import session_scope
from app.security.check_secrets import same_check, seal_check
from app.security.recovery_secrets import same_recovery

if TYPE_CHECKING:
    from app.healing.strategies.registry import StrategyRegistry
    from app.platform.core import Core
    from app.security.crypto import SecretBox

log = logging.getLogger("pipeline_guard.monitoring")


async def sync_declared_components(
    state: Core, secret_box: SecretBox, strategies: StrategyRegistry
) -> dict[str, list[str]]:
    """Returns the names created, updated and disabled."""
    report: dict[str, list[str]] = {"created": [], "updated": [], "disabled": []}
    declared = {d.name: d for d in state.settings.components}
    async with session_scope(state.sessionmaker) as session:
        service = ComponentService(session, secret_box, strategies)
        for decl in declared.values():
            data = ComponentCreate.declared(decl)
            existing = await service.repo.by_name(decl.name)
            if existing is None:
                # The file's graph was validated as a whole when the settings were loaded.
                await service.create(data, source=SOURCE_CONFIG, check_graph=False)
                report["created"].append(decl.name)
                continue
            check = validate_check(data.check)
            wanted: dict[str, Any] = {
                "description": data.description,
                "endpoint": data.endpoint,
                "critical": data.critical,
                "labels": data.labels,
                "region": data.labels.get("region"),
                "check": check,
                "recovery": validate_recovery(data.recovery, strategies),
                "enabled": data.enabled,
                "source": SOURCE_CONFIG,
                "depends_on": list(data.depends_on),
            }
            changed = {k: v for k, v in wanted.items() if k != "check" and getattr(existing, k) != v}
            if "recovery" in changed and same_recovery(existing.recovery, changed["recovery"], service.box):
                del changed["recovery"]  # the same secrets, encrypted afresh
            if not same_check(existing.check, check, service.box):
                changed["check"] = seal_check(check, None, service.box)
            if changed:
                if existing.source != SOURCE_CONFIG:
                    log.warning(
                        "component %r is now declared in the configuration; the file owns it from now on",
                        decl.name,
                    )
                for key, value in changed.items():
                    setattr(existing, key, value)
                existing.version += 1
                report["updated"].append(decl.name)
        stale = (
            (
                await session.execute(
                    select(Component).where(Component.source == SOURCE_CONFIG, Component.enabled.is_(True))
                )
            )
            .unique()
            .scalars()
            .all()
        )
        for component in stale:
            if component.name not in declared:
                component.enabled = False
                component.version += 1
                report["disabled"].append(component.name)
        await session.flush()
    if any(report.values()):
        log.info("declared components synced: %s", {k: v for k, v in report.items() if v})
    return report
