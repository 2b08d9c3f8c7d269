"""The operator's healing actions (API): a manual heal, approving or rejecting a proposed attempt,
re-arming a breaker.

They take the engine's lock and claim through the same path as automatic attempts
(`attempts.py`); a claimed action runs like any other (`HealingEngine._spawn`: act, then record).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from app.core.errors import Conflict, NotFound, RateLimited
from app.db.models.healing import OPEN_STATES, AttemptState, HealingAttempt, HealingIncident
from app.db.session import session_scope
from app.db.types import utcnow
from app.healing import breaker, budgets
from app.healing.attempts import Attempts, Claim, commit_claim, find_component, lease_until, make_claim
from app.healing.policy import allowed_entries, parse_policy
from app.healing.slots import take_slots
from app.healing.strategies.registry import UnknownStrategy

if TYPE_CHECKING:
    from app.platform.core import Core


class OperatorActions:
    def __init__(
        self,
        state: Core,
        attempts: Attempts,
        *,
        lock: asyncio.Lock,
        spawn: Callable[[Claim], None],
        wake: asyncio.Event,
    ) -> None:
        self.state = state
        self.settings = state.settings
        self.attempts = attempts
        self.registry = attempts.registry
        self.ports = attempts.ports
        self._lock = lock  # the engine's: an operator's claim and an automatic decision take turns
        self._spawn = spawn
        self.wake = wake

    async def trigger(self, component_name: str, *, strategy: str | None, principal: str | None) -> int:
        """Manual heal (seed's ``heal(component, failure_context)``): uses the open incident if any.
        Goes through the same bounds as an automatic attempt: one attempt of a component at a time
        (409), the concurrency slots (409), an open breaker (409: re-arm it first), the back-off after a
        failed attempt and the cooldown after a successful one (429 with Retry-After); dry-run and
        the admin's strategy lists apply too. Only ``max_attempts`` is the operator's to override."""
        if not self.settings.healing.enabled:
            raise Conflict("healing is disabled (healing.enabled is false)")
        now = utcnow()
        async with self._lock, session_scope(self.state.sessionmaker) as session:
            component = await find_component(session, component_name)
            if component is None:
                raise NotFound(f"component {component_name!r} not found")
            policy = parse_policy(component.recovery, self.settings)
            entries = allowed_entries(policy, self.settings, self.registry)
            if strategy is not None:
                try:
                    kind = self.registry.canonical(strategy)
                except UnknownStrategy:
                    kind = strategy
                entries = [e for e in entries if e.kind == kind or e.key == strategy]
            if not entries:
                if strategy:
                    message = f"component {component_name!r} lists no enabled strategy named {strategy!r}"
                else:
                    message = (
                        f"component {component_name!r} has no usable recovery strategy: add "
                        "recovery.strategies to it (and enable their kinds in the healing settings)"
                    )
                raise Conflict(
                    message, details={"problems": [message]}
                )  # the component's state, not bad input
            await self._refuse_when_bounded(session, component_name, now)
            incident = (
                await session.execute(
                    select(HealingIncident)
                    .where(HealingIncident.component == component_name, HealingIncident.status == "open")
                    .order_by(HealingIncident.opened_at.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            if incident is not None:
                key = f"i:{incident.incident_id}"
                busy = (
                    await session.execute(
                        select(func.count())
                        .select_from(HealingAttempt)
                        .where(HealingAttempt.incident_key == key, HealingAttempt.state.in_([*OPEN_STATES]))
                    )
                ).scalar_one()
                if busy:
                    raise Conflict(f"an attempt for {component_name}'s incident is already in progress")
                number = (
                    await session.execute(
                        select(func.coalesce(func.max(HealingAttempt.attempt_number), 0)).where(
                            HealingAttempt.incident_key == key
                        )
                    )
                ).scalar_one() + 1
                manual_key = None
            else:
                number, manual_key = 1, f"m:{uuid.uuid4().hex}"
            entry = entries[0]
            decision = {
                "mode": "manual",
                "chosen": entry.key,
                "explanation": f"requested by {principal or 'an operator'}",
            }
            claim = await self.attempts.claim(
                session,
                incident=incident,
                component=component,
                policy=policy,
                entry=entry,
                decision=decision,
                number=number,
                trigger="manual",
                now=now,
                requested_by=principal,
                manual_key=manual_key,
            )
            if claim is None and not policy.dry_run:
                raise Conflict(
                    "concurrency limit reached (healing.max_concurrent / per group); try again shortly"
                )
            attempt_id = await self._latest_id(session, incident, manual_key)
        if claim is not None:
            self._spawn(claim)
            return claim.attempt_id
        if attempt_id is None:
            raise RuntimeError("no attempt recorded for this request")
        return attempt_id

    async def _refuse_when_bounded(self, session, component_name: str, now) -> None:
        # The budget row is locked (Postgres) until this claim commits: replicas take turns.
        budget = await budgets.load_budget(session, component_name)
        busy = (
            await session.execute(
                select(HealingAttempt.id, HealingAttempt.state)
                .where(HealingAttempt.component == component_name, HealingAttempt.state.in_([*OPEN_STATES]))
                .order_by(HealingAttempt.id)
                .limit(1)
            )
        ).first()
        if busy is not None:
            raise Conflict(
                f"healing attempt {busy[0]} for {component_name} is already {busy[1]}; wait for it to finish",
                details={"attempt_id": busy[0], "state": str(busy[1])},
            )
        if budget.breaker_open:
            raise Conflict(
                f"the healing breaker of {component_name} is open; re-arm it first "
                f"(POST /api/v1/healing/breakers/{component_name}/reset)",
                details={"breaker_open": True},
            )
        reason = budgets.blocked_reason(budget, now)
        if reason:
            until = (
                budget.backoff_until
                if budget.backoff_until and budget.backoff_until > now
                else budget.cooldown_until
            )
            wait = max(1, int((until - now).total_seconds() + 0.999))
            raise RateLimited(
                f"healing {component_name} again is not allowed yet: {reason}",
                details={"retry_after_s": wait},
                headers={"Retry-After": str(wait)},
            )

    async def _latest_id(self, session, incident, manual_key) -> int | None:
        key = f"i:{incident.incident_id}" if incident is not None else manual_key
        return (
            await session.execute(
                select(func.max(HealingAttempt.id))
                .where(HealingAttempt.incident_key == key)
                .where(HealingAttempt.created_at >= utcnow() - timedelta(seconds=5))
            )
        ).scalar_one()

    async def approve(self, attempt_id: int, principal: str | None) -> None:
        now = utcnow()
        async with self._lock, session_scope(self.state.sessionmaker) as session:
            row = await session.get(HealingAttempt, attempt_id, with_for_update=True)
            if row is None:
                raise NotFound(f"healing attempt {attempt_id} not found")
            if row.state != AttemptState.PENDING_APPROVAL:
                raise Conflict(f"attempt {attempt_id} is {row.state}, not pending approval")
            if row.approval_deadline is not None and row.approval_deadline <= now:
                row.state = AttemptState.EXPIRED
                row.finished_at = now
                row.detail = "approval not given in time"
                self.attempts.count(row, "expired")  # as the periodic expiry counts it
                await session.commit()
                raise Conflict(f"attempt {attempt_id} expired before it was approved")
            component = await find_component(session, row.component)
            if component is None:
                raise NotFound(f"component {row.component!r} no longer exists")
            policy = parse_policy(component.recovery, self.settings)
            entry = next((e for e in policy.strategies if e.index == row.strategy_index), None)
            if entry is None or self.registry.canonical(entry.kind) != row.strategy:
                raise Conflict("the component's policy changed since this attempt was proposed; reject it")
            slots = await take_slots(session, self.settings.healing, dict(component.labels or {}))
            if slots is None:
                raise Conflict(
                    "concurrency limit reached (healing.max_concurrent / per group); try again shortly"
                )
            row.slot, row.group_key, row.group_slot = slots
            row.state = AttemptState.RUNNING
            row.started_at = now
            row.decided_by = principal
            row.owner = self.attempts.owner
            row.lease_until = await lease_until(session, self.settings)
            incident = await session.get(HealingIncident, row.incident_id) if row.incident_id else None
            if not await commit_claim(session):
                raise Conflict("another replica claimed this attempt")
            claim = make_claim(row, entry, policy, incident)
            claim.detected_at = None  # a human was in the loop: not a detection latency
        self._spawn(claim)

    async def reject(self, attempt_id: int, principal: str | None) -> None:
        now = utcnow()
        async with session_scope(self.state.sessionmaker) as session:
            row = await session.get(HealingAttempt, attempt_id, with_for_update=True)
            if row is None:
                raise NotFound(f"healing attempt {attempt_id} not found")
            if row.state != AttemptState.PENDING_APPROVAL:
                raise Conflict(f"attempt {attempt_id} is {row.state}, not pending approval")
            row.state = AttemptState.REJECTED
            row.decided_by = principal
            row.finished_at = now
            row.detail = f"rejected by {principal or 'an operator'}"
            if row.incident_id is not None:
                incident = await session.get(HealingIncident, row.incident_id)
                if incident is not None and incident.status == "open":
                    incident.outcome = "rejected"
            self.attempts.count(row, "rejected")

    async def reset_breaker(self, component: str, principal: str | None) -> bool:
        async with session_scope(self.state.sessionmaker) as session:
            budget = await budgets.load_budget(session, component)
            was_open = breaker.rearm(budget)
            self.state.metrics.circuit_open.labels(component).set(0)
            if was_open:
                await self.ports.alerts.resolve(
                    session,
                    fingerprint=f"healing-breaker:{component}",
                    component=component,
                    resolution_action=f"healing breaker re-armed by {principal or 'an operator'}",
                )
        self.wake.set()
        return was_open
