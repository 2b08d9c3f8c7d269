"""Helpers for healing tests: a guard with the engine but no loops (tests drive ``evaluate()``),
components created through the API (so policies are validated), and incidents opened/closed by
publishing the monitoring events healing subscribes to."""

from __future__ import annotations

import asyncio
import itertools
import sys
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from app.db.models import Component, Incident
from app.db.models.healing import HealingAttempt
from app.platform.events import IncidentClosed, IncidentOpened
from tests.conftest import make_settings, running_guard

PY = sys.executable
_ids = itertools.count(1000)


class Healing:
    def __init__(self, guard):
        self.guard = guard
        self.runtime = guard.runtime
        # None when healing is disabled: then nothing decides (``step`` starts nothing).
        self.engine = guard.runtime.healing.engine
        self.alerts = self.engine.ports.alerts if self.engine is not None else None

    async def add_component(self, name: str, recovery: dict, *, labels: dict | None = None) -> dict:
        response = await self.guard.client.post(
            "/api/v1/components",
            headers=await self.guard.headers("admin"),
            json={"name": name, "labels": labels or {}, "recovery": recovery},
        )
        assert response.status_code == 201, response.text
        return response.json()

    async def open_incident(
        self, component: str, incident_id: int | None = None, *, labels=None, at: datetime | None = None
    ) -> int:
        """Publish ``IncidentOpened`` as monitoring does, with the incident row it refers to (every
        subscriber runs: alerts and root cause too)."""
        incident_id = incident_id or next(_ids)
        at = at or datetime.now(UTC)
        async with self.guard.session() as session:
            component_id = (
                await session.execute(select(Component.id).where(Component.name == component))
            ).scalar_one_or_none()
            if component_id is not None and await session.get(Incident, incident_id) is None:
                session.add(
                    Incident(
                        id=incident_id,
                        component_id=component_id,
                        opened_at=at,
                        opening_status="critical",
                        worst_status="critical",
                        reason="3 consecutive failures",
                    )
                )
                await session.flush()
            await self.runtime.events.publish(
                IncidentOpened(
                    component=component,
                    component_id=component_id or 0,
                    incident_id=incident_id,
                    status="critical",
                    reason="3 consecutive failures",
                    at=at,
                    labels=labels or {},
                ),
                session,
            )
        return incident_id

    async def close_incident(self, component: str, incident_id: int) -> None:
        async with self.guard.session() as session:
            row = await session.get(Incident, incident_id)
            if row is not None:
                row.closed_at, row.close_reason = datetime.now(UTC), "healthy again"
            await self.runtime.events.publish(
                IncidentClosed(
                    component=component,
                    component_id=row.component_id if row is not None else 0,
                    incident_id=incident_id,
                    reason="healthy again",
                    at=datetime.now(UTC),
                ),
                session,
            )

    async def step(self) -> list[int]:
        if self.engine is None:
            return []
        started = await self.engine.evaluate()
        await self.engine.drain(timeout=30)
        return started

    async def attempts(self, **filters) -> list[HealingAttempt]:
        async with self.guard.session() as session:
            stmt = select(HealingAttempt).order_by(HealingAttempt.id)
            for key, value in filters.items():
                stmt = stmt.where(getattr(HealingAttempt, key) == value)
            return list((await session.execute(stmt)).scalars().all())

    def raised(self, title: str | None = None):
        return [
            r.fields
            for r in self.alerts.records
            if r.kind == "raise" and (title is None or r.fields["title"] == title)
        ]

    def resolved(self):
        return [r.fields for r in self.alerts.records if r.kind == "resolve"]


def healing_settings(db_url, tmp_path, **healing):
    base = {"command_actions_enabled": True, "max_concurrent": 3, "max_concurrent_per_group": 2}
    base.update(healing)
    return make_settings(db_url, tmp_path, healing=base)


@asynccontextmanager
async def healing_guard(db_url, tmp_path, *, build_services=None, **healing):
    async with running_guard(
        healing_settings(db_url, tmp_path, **healing), build_services=build_services
    ) as guard:
        yield Healing(guard)


@pytest.fixture
async def healing(db_url, tmp_path):
    async with healing_guard(db_url, tmp_path) as h:
        yield h


def touch_argv(path, *extra: str) -> list[str]:
    """A command that appends one line to ``path`` (so tests can count executions)."""
    code = "import sys; open(sys.argv[1], 'a').write('x\\n')" + "".join(f"; {e}" for e in extra)
    return [PY, "-c", code, str(path)]


def count_lines(path) -> int:
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


async def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


async def component_state(session, name: str):
    """The stored checks' state of component ``name`` (created empty when no check has run yet)."""
    from app.db.models import ComponentState

    component_id = (await session.execute(select(Component.id).where(Component.name == name))).scalar_one()
    state = await session.get(ComponentState, component_id)
    if state is None:
        state = ComponentState(component_id=component_id)
        session.add(state)
    return state
