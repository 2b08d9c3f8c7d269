"""Which components this replica checks: the one seam the replicas (leases) replace.

An ownership may also expose ``generation``, an int that moves whenever what ``owned`` answers may
have changed: the scheduler's refresh then skips its diff of the fleet while neither it nor the
registry moved. Without it the refresh diffs every time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


@runtime_checkable
class Ownership(Protocol):
    async def owned(self, component_ids: set[int]) -> set[int]:
        """The subset of `component_ids` this process should check now."""
        ...


@runtime_checkable
class HandsOver(Ownership, Protocol):
    """An ownership that can hand components to another replica (the replicas' lease manager)."""

    async def hand_over(self, session: AsyncSession, due_in: dict[int, float | None]) -> None:
        """Release these components in the caller's transaction, with their next due times."""
        ...

    def handed_over(self, component_ids: set[int]) -> None:
        """After the commit: forget them here."""
        ...


class OwnAll:
    """A single replica owns every component."""

    generation = 0  # what `owned` answers never changes

    async def owned(self, component_ids: set[int]) -> set[int]:
        return set(component_ids)
