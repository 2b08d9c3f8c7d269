"""How a component's status is shown, as opposed to how it is decided.

A heartbeat component that has never been pinged (and is not late yet) is shown as ``new``: the
state machine has nothing to decide from (its check reports "waiting for the first heartbeat"), and
"Operational, 100 % up" would claim a job runs that may never have run. ``new`` is derived here,
for the API, the status page and /metrics alike; it is not a state-machine status and never opens or
closes an incident.
"""

from __future__ import annotations

from typing import Any

NEW = "new"


def awaiting_first_ping(check: dict[str, Any] | None, last_ping_at: Any) -> bool:
    if not check:
        return False
    return check.get("kind") == "heartbeat" and last_ping_at is None


def is_new(status: str, check: dict[str, Any] | None, last_ping_at: Any) -> bool:
    """Never pinged and not (yet) late: a job that missed its first deadline shows its real status."""
    return status in ("unknown", "healthy") and awaiting_first_ping(check, last_ping_at)


def shown_status(status: str, check: dict[str, Any] | None, last_ping_at: Any) -> str:
    return NEW if is_new(status, check, last_ping_at) else status


async def publish_new_components(sessionmaker: Any, metrics: Any) -> None:
    """Set ``pipeline_guard_component_new{component}`` (1 while a heartbeat component awaits its first
    ping, else absent) from the database, just before a scrape. Best effort: /metrics never fails
    because the database is away."""
    import asyncio
    import contextlib

    from sqlalchemy import select

    from app.db.models import Component, ComponentState
    from app.db.session import session_scope

    if sessionmaker is None:
        return
    with contextlib.suppress(Exception):
        async with asyncio.timeout(2), session_scope(sessionmaker) as session:
            rows = (
                await session.execute(
                    select(Component.name, Component.check, ComponentState.status)
                    .join(ComponentState, ComponentState.component_id == Component.id)
                    .where(Component.enabled.is_(True), ComponentState.last_ping_at.is_(None))
                )
            ).all()
        waiting = {name for name, check, status in rows if is_new(status, check, None)}
        for name in metrics.new_components - waiting:
            metrics.component_new.remove(name)
        for name in waiting:
            metrics.component_new.labels(name).set(1.0)
        metrics.new_components = waiting
