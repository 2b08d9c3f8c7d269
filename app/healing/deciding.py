"""Deciding one open incident: whether to act, with which strategy, and claiming the attempt.

One session per incident: the cheapest refusals first (an attempt already open for the
incident, the component gone, disabled or held by another replica), then the policy, the status
the heal is decided on, silences, the budget and the breaker; then the claim, committed before
any side effect (``attempts.py``). Exhausting an incident (no strategy left, or ``max_attempts``
reached) raises the "human needed" alert and may open the breaker, in the same transaction. The
claim's row carries the "acting" marker: the action starts as soon as it is committed, so one commit
(not a claim and then a marker) stands between the decision and the spawn.

``open_incident_ids`` lists what a periodic pass decides: open incidents without an attempt in
flight (those are settled by their verification, not decided again).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import String, cast, exists, literal, select

from app.db.models.components import Component
from app.db.models.healing import (
    OPEN_STATES,
    AttemptState,
    HealingAttempt,
    HealingBudget,
    HealingIncident,
    HealingStrategyStat,
)
from app.db.session import session_scope, write_briefly
from app.db.types import utcnow
from app.healing import breaker, budgets, learning, lifecycle
from app.healing.attempts import Claim
from app.healing.claim_reads import lock_budget_for_claim
from app.healing.freshness import last_check_passed, status_predates_checks
from app.healing.policy import Policy, StrategyEntry, allowed_entries, parse_policy
from app.healing.ports import exhausted_fingerprint, page_fingerprint
from app.healing.rootcause import holds_healing

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.healing.engine import HealingEngine


async def open_incident_ids(session: AsyncSession) -> list[int]:
    """Open, undecided incidents with no attempt in flight, oldest first."""
    key = literal("i:").concat(cast(HealingIncident.incident_id, String))
    in_flight = exists().where(
        HealingAttempt.incident_key == key, HealingAttempt.state.in_(list(OPEN_STATES))
    )
    return list(
        (
            await session.execute(
                select(HealingIncident.incident_id)
                .where(HealingIncident.status == "open", HealingIncident.outcome.is_(None), ~in_flight)
                .order_by(HealingIncident.opened_at)
            )
        ).scalars()
    )


async def decide(engine: HealingEngine, incident_id: int) -> Claim | None:
    """The claim for the incident's next attempt (committed), or None when nothing is to run now."""
    settings = engine.settings
    async with session_scope(engine.state.sessionmaker) as session:
        await write_briefly(session)
        # The incident, its component (with the component's state, joined) and its attempts so far: one
        # round trip, a row per attempt (one row without an attempt).
        rows = (
            (
                await session.execute(
                    select(HealingIncident, Component, HealingAttempt)
                    .outerjoin(Component, Component.name == HealingIncident.component)
                    .outerjoin(HealingAttempt, HealingAttempt.incident_key == f"i:{incident_id}")
                    .where(HealingIncident.incident_id == incident_id)
                    .order_by(HealingAttempt.attempt_number)
                )
            )
            .unique()
            .all()
        )
        # The decision's instant, the attempt's ``started_at``: taken once what it decides on is read,
        # so it is never earlier than an earlier attempt's end (or a silence's) that the read saw, even
        # when the read waited for a connection or the write lock.
        now = utcnow()
        if not rows:
            return None
        incident, component = rows[0][0], rows[0][1]
        if incident.status != "open" or incident.outcome is not None:
            return None
        attempts = [attempt for _, _, attempt in rows if attempt is not None]
        if any(a.state in OPEN_STATES for a in attempts):
            return None  # in flight, or waiting for an operator
        if component is None or not component.enabled or not component.recovery:
            return None
        if not engine.attempts.may_act(component.id):
            return None  # another replica holds this component's lease: it decides
        if await holds_healing(session, incident_id, component):
            return None  # attributed to an unhealthy upstream (or held): the root is healed, not this
        if await unjudged(session, attempts, component):
            return None  # its last action was never verified: its checks speak before another one
        if await status_predates_checks(session, incident_id, component, engine.started_at):
            return None  # not checked since the guard started or the component changed: stale
        if await last_check_passed(session, incident_id, component):
            return None  # answering again, held unhealthy by hysteresis only: the checks decide
        policy = parse_policy(component.recovery, settings)
        status = await incident_status(session, incident_id, component.id)
        if not lifecycle.should_heal(status, policy.heal_on):
            return None  # e.g. degraded without `degraded` in heal_on: decided again if it worsens
        # An attempt interrupted before its action started did nothing: it is retried, and does
        # not count against max_attempts.
        acted = [a for a in attempts if not (a.state == AttemptState.INTERRUPTED and a.acting_at is None)]
        labels = dict(component.labels or {})
        if await engine.ports.silences.is_silenced(session, component.name, labels, now):
            return None
        # Locked with what the claim reads next (its slots and lease fence): one round trip on Postgres.
        budget, reads = await lock_budget_for_claim(
            session, settings.healing, component, labels, engine.attempts.leases
        )
        if budget.breaker_open:
            return None
        entries = allowed_entries(policy, settings, engine.registry)
        if not entries or len(acted) >= policy.max_attempts:
            await exhaust(engine, session, incident, component.name, policy, budget, now, acted)
            return None
        if budgets.blocked_reason(budget, now):
            return None
        entry, decision = await choose(engine, session, component.name, policy, entries, acted)
        claim = await engine.attempts.claim(
            session,
            incident=incident,
            component=component,
            policy=policy,
            entry=entry,
            decision=decision,
            number=len(attempts) + 1,
            trigger="auto",
            now=now,
            acting=True,  # committed with its acting marker: the action starts as soon as this returns
            reads=reads,
        )
        return claim


async def choose(
    engine: HealingEngine,
    session: AsyncSession,
    component: str,
    policy: Policy,
    entries: list[StrategyEntry],
    attempts,
) -> tuple[StrategyEntry, dict[str, Any]]:
    number = len(attempts) + 1
    if not policy.learned_ordering or len(entries) == 1:
        entry = entries[(number - 1) % len(entries)]
        return entry, {
            "mode": "ordered",
            "chosen": entry.key,
            "explanation": f"attempt {number}: strategy {entry.index + 1} of the admin's ordered list",
        }
    tried = {a.strategy_index for a in attempts}
    fresh = [e for e in entries if e.index not in tried] or entries
    rows = (
        (await session.execute(select(HealingStrategyStat).where(HealingStrategyStat.component == component)))
        .scalars()
        .all()
    )
    stats = {r.strategy_key: (r.successes, r.failures, r.total_recover_s) for r in rows}
    return learning.choose(fresh, stats, method=engine.settings.healing.learning)


async def exhaust(
    engine: HealingEngine,
    session: AsyncSession,
    incident: HealingIncident,
    component: str,
    policy: Policy,
    budget: HealingBudget,
    now: datetime,
    attempts,
) -> None:
    incident.outcome = "exhausted"
    alerts = engine.ports.alerts
    # One page per incident: a strategy that pages a human (notify_only) already said a human is
    # needed; while that alert is open, giving up adds no second one.
    if not await alerts.is_active(session, page_fingerprint(component, f"i:{incident.incident_id}")):
        await alerts.raise_alert(
            session,
            component=component,
            fingerprint=exhausted_fingerprint(component, incident.incident_id),
            severity="critical",
            title="healing exhausted: human needed",
            message=f"{len(attempts)} healing attempt(s) did not recover {component}; a human is needed",
            incident_id=incident.incident_id,
            labels=incident.labels,
        )
    if breaker.record_failed_incident(budget, policy, now):
        engine.state.metrics.circuit_open.labels(component).set(1)
        await alerts.raise_alert(
            session,
            component=component,
            fingerprint=f"healing-breaker:{component}",
            severity="critical",
            title="healing exhausted: human needed",
            message=(
                f"healing circuit breaker open for {component}: {len(budget.failed_incidents)} incidents "
                f"not healed within {policy.breaker_window:g} s; automatic healing stopped until "
                f"{breaker.rearm_time(budget).isoformat()} or an operator re-arms it"
            ),
            incident_id=incident.incident_id,
            labels=incident.labels,
        )
    await session.flush()


async def unjudged(session: AsyncSession, attempts, component) -> bool:
    """The incident's last attempt ended without a verdict (``cancelled``: its component was disabled
    while the action was verified) and no check has run since: the status is from before that action,
    so nothing is decided on it until a check has run (docs/LIFECYCLE.md rule 9)."""
    from app.db.models import ComponentState

    last = attempts[-1] if attempts else None
    if last is None or last.state != AttemptState.CANCELLED or not component.check:
        return False
    state = await session.get(ComponentState, component.id)  # loaded with the component: no query
    checked = state.last_check_at if state is not None else None
    return checked is None or last.finished_at is None or checked <= last.finished_at


async def incident_status(session: AsyncSession, incident_id: int, component_id: int) -> str:
    """The status an incident's heal is decided on: the component's own while the incident is its
    current one (so a component that improved to degraded is not restarted for having been critical,
    and one still ``recovering`` from an action is left to its checks' verdict, whatever became of
    that action's attempt), else the incident's worst (external incidents, from Alertmanager, leave
    the checks' status alone)."""
    from app.db.models import ComponentState, Incident

    state = await session.get(ComponentState, component_id)  # loaded with the component: no query
    if (
        state is not None
        and state.current_incident_id == incident_id
        and (state.status in lifecycle.INCIDENT_STATUSES or state.status == lifecycle.RECOVERING)
    ):
        return state.status
    incident = await session.get(Incident, incident_id)
    if incident is None:
        return "critical"  # only healing's own record of it: the opening event carried no more
    return incident.worst_status or incident.opening_status or "critical"
