"""Which components this replica checks: the one seam the replicas (leases) issue replaces."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Ownership(Protocol):
    async def owned(self, component_ids: set[int]) -> set[int]:
        """The subset of `component_ids` this process should check now."""
        ...


class OwnAll:
    """A single replica owns every component."""

    async def owned(self, component_ids: set[int]) -> set[int]:
        return set(component_ids)
