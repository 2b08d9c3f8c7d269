"""An attempt row's life, shared by the automatic path (`engine.py`) and the operator's actions
(`operator.py`).

The claim: the ``healing_attempts`` row is committed before any side effect — ``dry_run`` and
``pending_approval`` rows stop there; a ``running`` row holds a global and a per-group concurrency
slot (both unique) and, for an automatic attempt, is fenced by the component's lease in the same
transaction. A replica that loses a race gets an IntegrityError and does nothing.

The outcome: ``failed``/``interrupted`` (back-off), or ``succeeded`` (budget, health alert resolved
with the resolution action), with the per-strategy statistics and the outcome counter.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models.components import Component
from app.db.models.healing import AttemptState, HealingAttempt, HealingIncident, HealingStrategyStat
from app.healing import breaker, budgets
from app.healing.claim_reads import ClaimReads
from app.healing.leases import database_clock, database_now
from app.healing.policy import Policy, StrategyEntry, parse_policy
from app.healing.ports import HealingPorts
from app.healing.slots import take_slots
from app.healing.strategies.base import ActionContext
from app.healing.strategies.registry import StrategyRegistry

if TYPE_CHECKING:
    from app.platform.core import Core
    from app.replicas.manager import LeaseManager

log = logging.getLogger("pipeline_guard.healing")


def resolution_verb(kind: str) -> str:
    return {"restart": "restarted", "kubernetes": "restarted", "webhook": "re-run via webhook"}.get(
        kind, f"healed ({kind})"
    )


@dataclass
class Claim:
    attempt_id: int
    entry: StrategyEntry
    ctx: ActionContext
    policy: Policy
    detected_at: datetime | None
    component_id: int | None = None
    # The "acting" marker is already committed (by the decision, on the claim's own connection).
    acting_marked: bool = False


async def find_component(session: AsyncSession, name: str) -> Component | None:
    return (
        (await session.execute(select(Component).where(Component.name == name))).unique().scalar_one_or_none()
    )


async def lease_until(session: AsyncSession, settings) -> datetime:
    """The lease a new claim starts with (its owner renews it while it acts)."""
    return await database_now(session) + timedelta(seconds=settings.healing.attempt_lease)


UNVERIFIABLE = (
    "verification ended without a verdict: the component was {why} while its action was being "
    "verified, so no check could tell whether it worked; not counted as a failure of the strategy"
)
UPSTREAM_FAILED = (
    "verification ended without a verdict: its upstream {root} was failing while the action was being "
    "verified, so its checks could not tell whether it worked; not counted as a failure of the strategy"
)


async def commit_claim(session: AsyncSession) -> bool:
    """Flush and commit the claim now, before any side effect. False if another replica won."""
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        return False
    return True


def make_claim(
    row: HealingAttempt, entry: StrategyEntry, policy: Policy, incident: HealingIncident | None
) -> Claim:
    params = dict(entry.params)
    if incident is not None:
        params["_incident"] = {"status": "open", "reason": incident.reason}
    ctx = ActionContext(
        component=row.component,
        labels={},
        incident_id=row.incident_key.split(":", 1)[1],
        attempt_id=row.id,
        attempt_number=row.attempt_number,
        params=params,
        dry_run=False,
        timeout_s=entry.timeout_s,
        incident_started_at=incident.opened_at if incident else None,
    )
    return Claim(row.id, entry, ctx, policy, incident.opened_at if incident else None, row.component_id)


class Attempts:
    def __init__(
        self,
        state: Core,
        registry: StrategyRegistry,
        ports: HealingPorts,
        owner: str,
        *,
        leases: LeaseManager,
    ) -> None:
        self.state = state
        self.leases = leases
        self.settings = state.settings
        self.registry = registry
        self.ports = ports
        self.owner = owner
        # Attempts whose claim (with its acting marker) may or may not have been committed, and whose
        # action was never started: settled as never started (a retry, no back-off).
        self.never_started: set[int] = set()

    # -- the claim ----------------------------------------------------------------------------------

    async def claim(
        self,
        session,
        *,
        incident: HealingIncident | None,
        component: Component,
        policy: Policy,
        entry: StrategyEntry,
        decision: dict[str, Any],
        number: int,
        trigger: str,
        now: datetime,
        requested_by: str | None = None,
        manual_key: str | None = None,
        acting: bool = False,
        reads: ClaimReads | None = None,
    ) -> Claim | None:
        """The attempt's row, committed before any side effect. ``acting``: the caller starts the action
        as soon as this returns, so the "acting" marker is committed with the claim (one commit on the
        reaction's path); otherwise the action's task commits it (``acting.mark_acting``). ``reads``: the
        slots in use and the lease fence, read with the budget's lock in this transaction
        (``claim_reads.py``)."""
        strategy = self.registry.get(entry.kind)
        description = strategy.describe(entry.params)
        labels = dict(component.labels or {})
        key = f"i:{incident.incident_id}" if incident is not None else manual_key
        row = HealingAttempt(
            incident_id=incident.incident_id if incident else None,
            incident_key=key,
            attempt_number=number,
            component=component.name,
            component_id=component.id,
            strategy=strategy.kind,
            strategy_index=entry.index,
            trigger=trigger,
            requested_by=requested_by,
            description=description,
            decision=decision,
            owner=self.owner,
            created_at=now,
        )
        if policy.dry_run:
            row.state = AttemptState.DRY_RUN
            row.detail = f"dry-run: would {description}"
            row.finished_at = now
            session.add(row)
            if incident is not None:
                incident.outcome = "dry_run"
            await self.ports.alerts.raise_alert(
                session,
                component=component.name,
                fingerprint=f"healing-dry-run:{component.name}:{key}",
                severity="warning",
                title="healing dry-run",
                message=f"dry-run: healing would {description}",
                incident_id=row.incident_id,
                labels=labels,
            )
            await commit_claim(session)
            self.count(row, "dry_run")
            return None
        if policy.require_approval and trigger == "auto":
            row.state = AttemptState.PENDING_APPROVAL
            row.approval_deadline = now + timedelta(seconds=policy.approval_timeout)
            row.detail = f"waiting for an operator to approve: {description}"
            session.add(row)
            await commit_claim(session)
            await self.ports.alerts.raise_alert(
                session,
                component=component.name,
                fingerprint=f"healing-approval:{component.name}:{key}",
                severity="warning",
                title="healing awaits approval",
                message=f"approve or reject attempt {row.id}: {description}",
                incident_id=row.incident_id,
                labels=labels,
            )
            return None
        slots = reads.slots if reads is not None else await take_slots(session, self.settings.healing, labels)
        if slots is None:
            return None  # at the concurrency limit: decided again on the next pass
        row.slot, row.group_key, row.group_slot = slots
        row.state = AttemptState.RUNNING
        row.started_at = now
        clock = database_clock(session)
        row.lease_until = clock + timedelta(seconds=self.settings.healing.attempt_lease)
        if acting:
            row.acting_at = clock  # the action starts right after this commit: one commit, not two
        session.add(row)
        if trigger == "auto" and not await self.fenced(session, component.id, reads):
            await session.rollback()
            return None
        try:
            if not await commit_claim(session):
                return None
        except BaseException:
            # The commit's outcome is unknown (the connection broke while committing): if the row was
            # stored, its marker says "acting" although nothing ran. The reconciler settles it as
            # never started (``never_started``) when its lease runs out.
            if acting and row.id is not None:
                self.never_started.add(row.id)
            raise
        claim = make_claim(row, entry, policy, incident)
        claim.acting_marked = acting
        return claim

    def may_act(self, component_id: int) -> bool:
        """In memory, no I/O: does this replica hold the component's lease (before its local deadline)?"""
        return self.leases.epoch_for(component_id) is not None

    async def fenced(self, session: AsyncSession, component_id: int, reads: ClaimReads | None) -> bool:
        """The fence, or what ``reads`` already read of it (its lock held since), with the lease's local
        deadline checked again now, as ``fence`` checks it."""
        if reads is None:
            return await self.fence(session, component_id)
        if reads.fenced and self.leases.epoch_for(component_id) == reads.epoch:
            return True
        log.warning(
            "healing: not claiming an attempt on component %s: its lease (epoch %s) is not held by this "
            "replica",
            component_id,
            reads.epoch,
        )
        return False

    async def fence(self, session: AsyncSession, component_id: int) -> bool:
        """Re-check the lease (holder, epoch, expiry) in the claim's own transaction; the lease row stays
        locked until the claim commits. False: the lease moved on — no claim, no action."""
        from app.replicas.manager import LeaseLost

        try:
            await self.leases.fence(session, component_id)
        except LeaseLost as exc:
            log.warning("healing: not claiming an attempt on component %s: %s", component_id, exc)
            return False
        return True

    # -- the outcome --------------------------------------------------------------------------------

    async def policy_for(self, session, component: str) -> Policy:
        comp = await find_component(session, component)
        return parse_policy(comp.recovery if comp else None, self.settings)

    async def finish_failed(
        self,
        session,
        row: HealingAttempt,
        now: datetime,
        state: AttemptState,
        detail: str,
        *,
        policy: Policy | None = None,
        count_stats: bool = True,
    ) -> None:
        policy = policy or await self.policy_for(session, row.component)
        row.state = state
        row.detail = detail[:2000]
        row.finished_at = now
        row.slot = row.group_slot = None
        budget = await budgets.load_budget(session, row.component)
        delay = budgets.record_failure(budget, policy, now)
        row.decision = {**(row.decision or {}), "backoff_s": delay}
        if count_stats:
            await self._stat(session, row, success=False)
        self.count(row, str(state))
        await session.flush()

    def finish_cancelled(
        self, row: HealingAttempt, now: datetime, why: str, detail: str | None = None
    ) -> None:
        """An attempt that ends without a verdict (its component was disabled or deleted while the
        action was verified, or an upstream failed meanwhile: no check could tell): no back-off,
        breaker or statistics."""
        row.state = AttemptState.CANCELLED
        row.finished_at = now
        row.slot = row.group_slot = None
        row.decision = {**(row.decision or {}), "no_verdict": why}
        row.detail = f"{row.detail or ''}; {detail or UNVERIFIABLE.format(why=why)}"[:2000]
        self.count(row, str(AttemptState.CANCELLED))

    async def mark_succeeded(
        self,
        session,
        row: HealingAttempt,
        incident: HealingIncident | None,
        at: datetime,
        *,
        policy: Policy | None = None,
    ) -> None:
        policy = policy or await self.policy_for(session, row.component)
        row.state = AttemptState.SUCCEEDED
        row.finished_at = at
        row.slot = row.group_slot = None
        if incident is not None:
            incident.outcome = "healed"
            # The stick window: an incident opened before this turns the heal into a failed one.
            row.decision = {
                **(row.decision or {}),
                "holds_until": (at + timedelta(seconds=policy.verify_timeout)).isoformat(),
            }
            row.time_to_recover_s = max(0.0, (at - incident.opened_at).total_seconds())
            self.state.metrics.time_to_recover.observe(row.time_to_recover_s)
        budget = await budgets.load_budget(session, row.component)
        budgets.record_success(budget, policy, at)
        await self._stat(session, row, success=True)
        action = f"{resolution_verb(row.strategy)} by healing attempt {row.id}"
        row.detail = (
            f"{row.detail or ''}; verified healthy" if incident is not None else (row.detail or "succeeded")
        )
        await self.ports.alerts.resolve(
            session, component=row.component, incident_id=row.incident_id, resolution_action=action
        )
        self.count(row, "succeeded")
        await session.flush()

    async def mark_relapsed(
        self, session, row: HealingAttempt, at: datetime, *, policy: Policy, why: str
    ) -> None:
        """A verified heal that did not hold through the stick window: it becomes a failed heal for
        the budget (back-off instead of cooldown), the breaker and the strategy statistics."""
        row.state = AttemptState.FAILED
        row.detail = f"{row.detail or ''}; relapsed within {policy.verify_timeout:g}s of the heal ({why})"[
            :2000
        ]
        row.decision = {**(row.decision or {}), "relapsed_at": at.isoformat()}
        budget = await budgets.load_budget(session, row.component)
        budget.cooldown_until = None
        budgets.record_failure(budget, policy, at)
        incident = (
            await session.get(HealingIncident, row.incident_id) if row.incident_id is not None else None
        )
        if incident is not None and incident.outcome == "healed":
            incident.outcome = "relapsed"
        key = f"{row.strategy_index}:{row.strategy}"
        stat = await session.get(HealingStrategyStat, (row.component, key), with_for_update=True)
        if stat is not None:
            stat.successes = max(0, stat.successes - 1)
            stat.failures += 1
        self.count(row, "relapsed")
        if breaker.record_failed_incident(budget, policy, at):
            self.state.metrics.circuit_open.labels(row.component).set(1)
            await self.ports.alerts.raise_alert(
                session,
                component=row.component,
                fingerprint=f"healing-breaker:{row.component}",
                severity="critical",
                title="healing exhausted: human needed",
                message=(
                    f"healing circuit breaker open for {row.component}: {len(budget.failed_incidents)} "
                    f"heals did not hold or did not work within {policy.breaker_window:g} s; automatic "
                    f"healing stopped until {breaker.rearm_time(budget).isoformat()} "
                    "or an operator re-arms it"
                ),
                incident_id=row.incident_id,
            )
        await session.flush()

    async def _stat(self, session, row: HealingAttempt, *, success: bool) -> None:
        key = f"{row.strategy_index}:{row.strategy}"
        stat = await session.get(HealingStrategyStat, (row.component, key), with_for_update=True)
        if stat is None:
            stat = HealingStrategyStat(
                component=row.component, strategy_key=key, successes=0, failures=0, total_recover_s=0.0
            )
            session.add(stat)
        if success:
            stat.successes += 1
            stat.total_recover_s += row.time_to_recover_s or 0.0
        else:
            stat.failures += 1

    def count(self, row: HealingAttempt, outcome: str) -> None:
        self.state.metrics.count_healing(row.component, row.strategy, outcome)
