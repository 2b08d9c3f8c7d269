"""What an automatic claim reads under its component's budget lock, in one round trip on Postgres.

A decision locks the component's budget (``budgets.load_budget``); its claim then reads the
concurrency slots in use (``slots.py``) and fences the attempt on the component's lease
(``Attempts.fence``): three statements, each a round trip the reaction waits for, and on a busy event
loop a turn of the loop each. On Postgres they are one statement: the budget row locked FOR UPDATE,
with the slots in use and the lease fence (the row locked FOR KEY SHARE, as ``fence`` locks it) as
columns of that row. The claim uses what was read (``Attempts.claim(reads=...)``). The guarantees are
those of the three statements: the budget lock serializes the deciders of a component, the slots stay
unique (a slot taken meanwhile fails the insert and the claim is lost, as before), the fence's lock is
held until the claim commits, and the claim checks the fence's value and the lease's local deadline
(``epoch_for``) again before it commits.

SQLite (its statements do not cross a network), a lease already lost (the claim's own fence says so)
and a component's first heal (no budget row yet: created in a savepoint) read them one by one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select

from app.db.models.healing import HealingBudget
from app.healing import budgets
from app.healing.slots import slots_from, used_slots
from app.replicas.leases import LeaseLost

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.config.settings import HealingSection
    from app.db.models.components import Component
    from app.replicas.manager import LeaseManager


@dataclass(frozen=True)
class ClaimReads:
    slots: tuple[int, str | None, int | None] | None  # (global, group key, group slot); None: at a limit
    epoch: int  # the lease epoch the fence was read under
    fenced: bool  # the lease row showed this replica holding it at `epoch`, and is locked


async def lock_budget_for_claim(
    session: AsyncSession,
    healing: HealingSection,
    component: Component,
    labels: dict[str, str],
    leases: LeaseManager,
) -> tuple[HealingBudget, ClaimReads | None]:
    """The component's budget, locked; with what the claim would read next when one statement could
    read it too (None: the claim reads it itself)."""
    if session.get_bind().dialect.name != "postgresql":
        return await budgets.load_budget(session, component.name), None
    try:
        epoch, fence = leases.fence_column(component.id)
    except LeaseLost:
        return await budgets.load_budget(session, component.name), None
    used, used_in_group = used_slots(healing, labels)
    columns = {"used": used, "used_in_group": used_in_group, "fenced_epoch": fence}
    row = (
        await session.execute(
            select(HealingBudget, *(c.label(name) for name, c in columns.items() if c is not None))
            .where(HealingBudget.component == component.name)
            .with_for_update(of=HealingBudget)
        )
    ).first()
    if row is None:  # its first heal: the budget row is created (in a savepoint), then read as before
        return await budgets.load_budget(session, component.name), None
    read = row._mapping
    slots = slots_from(healing, labels, read["used"], read.get("used_in_group"))
    fenced = fence is None or read.get("fenced_epoch") == epoch
    return row[0], ClaimReads(slots=slots, epoch=epoch, fenced=fenced)
