"""Does a buffered result change its component's status? Answered at once, before any write.

The result writer flushes a status-changing result at once (its transaction publishes the
transition and wakes healing on commit) and every other result with the next routine flush. To tell
them apart it folds each buffered result into a copy of the component's state machine: the one the
scheduler remembers (`tracked`, as of the last commit) with the buffered, unwritten results of the
same component folded in ahead of it. Once a flush has written what a component's copy folded in,
the copy is dropped and `tracked` is as far.

A wrong "yes" only costs an earlier flush: the write itself decides for real (`recorder.write_batch`).
"""

from __future__ import annotations

from collections.abc import Iterable

from app.checks.base import Outcome
from app.monitoring import state_machine as sm
from app.monitoring.tracked import Observation, Tracked


class Lookahead:
    def __init__(self, tracked: dict[int, Tracked]):
        self.tracked = tracked  # the scheduler's map, as of the last commit
        # component -> (its state machine with the buffered, unwritten results folded in, the
        # sequence number of the last of them)
        self._ahead: dict[int, tuple[sm.MachineState, int]] = {}
        self.seq = 0  # moves with every result folded in

    def decides(self, observation: Observation) -> bool:
        """Would this result change its component's status, given the results already buffered?
        A steady success of a healthy component (the common case) is answered without the state
        machine."""
        cid = observation.component_id
        tracked = self.tracked.get(cid)
        if tracked is None:
            return False
        ahead = self._ahead.get(cid)
        machine = tracked.machine if ahead is None else ahead[0]
        result = observation.result
        if result.pending:
            return False  # no verdict: folded into nothing (recorder.write_batch)
        if (
            result.outcome == Outcome.UP
            and machine.status == sm.HEALTHY
            and machine.consecutive_failures == 0
            and machine.grace_until is None
        ):
            return False
        self.seq += 1
        machine, decision = sm.observe(
            machine,
            result.outcome,
            result.observed_at,
            tracked.thresholds,
            result.detail,
            conclusive=result.conclusive,
        )
        self._ahead[cid] = (machine, self.seq)
        # A first observation (unknown -> healthy) is not urgent: nothing reacts to it, and a
        # restart would otherwise flush once per component.
        return decision is not None and not (
            decision.previous == sm.UNKNOWN and decision.current == sm.HEALTHY
        )

    def restart(self, component_id: int) -> None:
        """Something other than a result moved the component's machine (a recovery mark): look
        ahead afresh from `tracked` once it is written."""
        self._ahead.pop(component_id, None)

    def written(self, component_ids: Iterable[int], taken_seq: int) -> None:
        """A flush committed these components' results, taken when `seq` was `taken_seq`: what their
        copies folded in up to then is in `tracked` now."""
        if not self._ahead:
            return
        for cid in component_ids:
            ahead = self._ahead.get(cid)
            if ahead is not None and ahead[1] <= taken_seq:
                del self._ahead[cid]
