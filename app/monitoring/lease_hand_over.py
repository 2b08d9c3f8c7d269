"""A draining replica hands its components' leases over right after their next result.

The replicas' hand-over (`app/replicas/handover.py`) names the components to give away; for each,
the result writer flushes as soon as its next result is buffered, and the lease is released in that
flush's transaction with the component's next due time (`HandsOver.hand_over`), so the new owner
checks it on time and no result is written after the lease moved on. After the commit the scheduler
forgets the component.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from app.monitoring.ownership import HandsOver, Ownership
from app.monitoring.tracked import Observation, RecoveryMark

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


class LeaseHandOver:
    def __init__(
        self,
        ownership: Ownership,
        *,
        due_in: Callable[[set[int]], dict[int, float | None]],
        forget: Callable[[int], None],
    ):
        self.ownership = ownership
        self._due_in = due_in
        self._forget = forget
        self.pending: set[int] = set()  # hand these leases over right after their next result

    def after_probe(self, component_ids: set[int]) -> None:
        self.pending.update(component_ids)

    def cancel(self, component_ids: Iterable[int]) -> None:
        self.pending.difference_update(component_ids)

    def wants_flush(self, component_id: int) -> bool:
        return component_id in self.pending

    def _hands_over(self) -> HandsOver:
        if not isinstance(self.ownership, HandsOver):  # `in_flush` hands nothing over then
            raise TypeError("this ownership cannot hand components over")
        return self.ownership

    async def in_flush(
        self, session: AsyncSession, items: list[Observation | RecoveryMark]
    ) -> dict[int, float | None]:
        """In the flush's transaction: release the leases of the pending components whose result is
        in `items`; returns them with the seconds until their next check is due."""
        if not self.pending:
            return {}
        if not isinstance(self.ownership, HandsOver):
            self.pending.clear()
            return {}
        written = {item.component_id for item in items if isinstance(item, Observation)}
        handing = self._due_in(self.pending & written)
        if handing:
            await self._hands_over().hand_over(session, handing)
        return handing

    def committed(self, handing: dict[int, float | None]) -> None:
        """After the flush's commit: these components are another replica's now."""
        if not handing:
            return
        self.pending.difference_update(handing)
        self._hands_over().handed_over(set(handing))
        for cid in handing:
            self._forget(cid)
