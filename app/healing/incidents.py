"""Healing's view of monitoring's incidents (``healing_incidents``), kept by its events inside the
publisher's transaction (subscribers only flush).

``IncidentOpened`` records the incident and, once that transaction commits, hands its id over to
the engine (decided at once, on its own); a worsening ``HealthTransition`` hands its incident over too.
An incident opened within the stick window after a heal makes that heal a failed one (relapse) — once
it is the component's own: one attributed to (or held for) an unhealthy upstream counts only if it
is released (``IncidentReleased``).
``HealthTransition(recovering→unhealthy)`` fails the verifying attempt at once.
``HealthTransition(→healthy)`` / ``IncidentClosed`` close it: the verifying attempt becomes
``succeeded`` (and resolves the health alert with its resolution action), an exhausted incident's
alert is resolved, attempts still waiting for approval expire.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Component
from app.db.models.healing import AttemptState, HealingAttempt, HealingIncident
from app.db.upsert import insert_unless_present
from app.healing import lifecycle
from app.healing.attempts import UPSTREAM_FAILED, Attempts, resolution_verb
from app.healing.policy import parse_policy
from app.healing.ports import exhausted_fingerprint, page_fingerprint
from app.healing.rootcause import defer_to_upstream, has_upstream, is_suppressed
from app.platform.events import HealthTransition, IncidentClosed, IncidentOpened, IncidentReleased

if TYPE_CHECKING:
    from app.healing.wake import Wake
    from app.platform.core import Core


class IncidentEvents:
    def __init__(self, state: Core, attempts: Attempts, wake: Wake, closed_incidents: set[int]) -> None:
        self.state = state
        self.closed = closed_incidents  # read by the recovery notifier's re-check bursts
        self.attempts = attempts
        self.ports = attempts.ports
        self.wake = wake  # the engine's wake-up

    def _wake_after_commit(self, session: AsyncSession, incident_id: int | None = None) -> None:
        def _set(_session) -> None:
            if incident_id is not None:
                self.wake.hand_over(incident_id)
            else:
                self.wake.set()

        event.listen(session.sync_session, "after_commit", _set, once=True)

    async def on_incident_opened(self, evt: IncidentOpened, session: AsyncSession) -> None:
        recorded = (
            await session.execute(
                insert_unless_present(session, HealingIncident)
                .values(
                    incident_id=evt.incident_id,
                    component=evt.component,
                    component_id=evt.component_id,
                    labels=dict(evt.labels),
                    status="open",
                    reason=evt.reason[:2000],
                    opened_at=evt.at,
                )
                .returning(HealingIncident.incident_id)
            )
        ).first()
        # An incident attributed to (or held for) an unhealthy upstream is the upstream's symptom, not
        # a relapse of this component's heal: counted only once it is its own (released). Only a
        # component with upstreams is ever attributed or held.
        if recorded is not None and not (
            await has_upstream(session, evt.component) and (await is_suppressed(session, evt.incident_id))[0]
        ):
            await self._count_relapse(
                session, evt.component, evt.component_id, evt.incident_id, evt.at, evt.reason
            )
        self._wake_after_commit(session, evt.incident_id)

    async def on_incident_released(self, evt: IncidentReleased, session: AsyncSession) -> None:
        """A held incident became the component's own: a relapse if it opened within the stick window."""
        await self._count_relapse(
            session,
            evt.component,
            evt.component_id,
            evt.incident_id,
            evt.opened_at,
            "held until its upstreams were known healthy",
        )

    async def _count_relapse(
        self,
        session: AsyncSession,
        component: str,
        component_id: int,
        incident_id: int,
        opened_at: datetime,
        reason: str,
    ) -> None:
        """A new incident within the stick window after a heal: that heal did not hold. Only a heal of
        this very component counts (by id): one deleted and created again under its name starts
        afresh, as its budget and breaker do."""
        found = (
            await session.execute(
                select(HealingAttempt, Component.recovery)
                .outerjoin(Component, Component.id == HealingAttempt.component_id)
                .where(
                    HealingAttempt.component == component,
                    HealingAttempt.component_id == component_id,
                    HealingAttempt.state == AttemptState.SUCCEEDED,
                    HealingAttempt.incident_id.is_not(None),
                    HealingAttempt.incident_id != incident_id,
                )
                .order_by(HealingAttempt.finished_at.desc(), HealingAttempt.id.desc())
                .limit(1)
            )
        ).first()
        if found is None:
            return
        healed, recovery = found
        policy = parse_policy(recovery, self.attempts.settings)  # the policy of this very component
        if lifecycle.relapsed(healed.finished_at, opened_at, policy.verify_timeout):
            await self.attempts.mark_relapsed(
                session, healed, opened_at, policy=policy, why=f"incident {incident_id} opened: {reason}"
            )

    async def on_health_transition(self, evt: HealthTransition, session: AsyncSession) -> None:
        if evt.current in lifecycle.INCIDENT_STATUSES:
            self._wake_after_commit(session, evt.incident_id)  # worse: the policy may heal this status now
        if lifecycle.verdict_after_action(evt.previous, evt.current) == lifecycle.FAILED and evt.incident_id:
            # Out of `recovering` into an unhealthy status: the action did not heal; no attempt waits
            # in `verifying` for results that cannot verify it.
            attempt = await self._latest_attempt(session, evt.incident_id, AttemptState.VERIFYING)
            root = (
                await defer_to_upstream(session, evt.incident_id, evt.component, self.state.settings, evt.at)
                if attempt is not None
                else None
            )
            if attempt is not None and root is not None:
                # An upstream failed meanwhile: the failure is its doing, not a verdict on this action.
                self.attempts.finish_cancelled(attempt, evt.at, "upstream", UPSTREAM_FAILED.format(root=root))
            elif attempt is not None:
                await self.attempts.finish_failed(
                    session,
                    attempt,
                    evt.at,
                    AttemptState.FAILED,
                    f"the component is {evt.current} after the action: {evt.reason}",
                )
            return
        if evt.current != "healthy":
            return
        stmt = select(HealingIncident).where(
            HealingIncident.component == evt.component, HealingIncident.status == "open"
        )
        if evt.incident_id is not None:
            stmt = stmt.where(HealingIncident.incident_id == evt.incident_id)
        # Locked: an action's verdict (``acting.record``) decides on this row too; whichever commits
        # second sees the other (an attempt verifying, or the incident closed by its action).
        for incident in (await session.execute(stmt.with_for_update())).scalars().all():
            await self._close(session, incident, evt.at)

    async def on_incident_closed(self, evt: IncidentClosed, session: AsyncSession) -> None:
        incident = await session.get(HealingIncident, evt.incident_id)
        if incident is None or incident.status == "closed":
            return
        await self._close(session, incident, evt.at)

    @staticmethod
    async def _latest_attempt(
        session: AsyncSession, incident_id: int, state: AttemptState
    ) -> HealingAttempt | None:
        """The incident's latest attempt in ``state`` (a running one only once its action started).

        A verifying one is locked and read afresh: the periodic pass may be ending it right now (its
        deadline); whichever verdict commits first stands, and the other finds it no longer verifying."""
        stmt = select(HealingAttempt).where(
            HealingAttempt.incident_id == incident_id, HealingAttempt.state == state
        )
        if state == AttemptState.RUNNING:
            stmt = stmt.where(HealingAttempt.acting_at.is_not(None))
        elif state == AttemptState.VERIFYING:
            stmt = stmt.with_for_update(of=HealingAttempt).execution_options(populate_existing=True)
        return (
            await session.execute(stmt.order_by(HealingAttempt.attempt_number.desc()).limit(1))
        ).scalar_one_or_none()

    async def _close(self, session: AsyncSession, incident: HealingIncident, at: datetime) -> None:
        evt_incident_id = incident.incident_id
        incident.status = "closed"
        incident.closed_at = at
        closed = self.closed
        closed.add(evt_incident_id)
        if len(closed) > 10000:
            closed.clear()
        attempt = await self._latest_attempt(session, evt_incident_id, AttemptState.VERIFYING)
        acting = (
            None
            if attempt is not None
            else await self._latest_attempt(session, evt_incident_id, AttemptState.RUNNING)
        )
        if attempt is not None:
            await self.attempts.mark_succeeded(session, attempt, incident, at)
        elif acting is not None:
            # Healthy while the action still runs (a restart command that waits for the service it
            # started): the action healed it. The attempt is marked succeeded when its action ends;
            # the alerts say now who healed it, before monitoring resolves them as "recovered".
            await self.ports.alerts.resolve(
                session,
                component=acting.component,
                incident_id=acting.incident_id,
                resolution_action=f"{resolution_verb(acting.strategy)} by healing attempt {acting.id}",
            )
        else:
            # Healthy again without a heal: a page for a human (a notify_only strategy's, the
            # escalation after max_attempts) ends with the incident.
            fingerprints = [page_fingerprint(incident.component, f"i:{incident.incident_id}")]
            if incident.outcome == "exhausted":
                fingerprints.append(exhausted_fingerprint(incident.component, incident.incident_id))
            for fingerprint in fingerprints:
                await self.ports.alerts.resolve(
                    session,
                    fingerprint=fingerprint,
                    component=incident.component,
                    incident_id=incident.incident_id,
                    resolution_action="recovered without healing",
                )
        pending = (
            (
                await session.execute(
                    select(HealingAttempt).where(
                        HealingAttempt.incident_id == evt_incident_id,
                        HealingAttempt.state == AttemptState.PENDING_APPROVAL,
                    )
                )
            )
            .scalars()
            .all()
        )
        for row in pending:
            row.state = AttemptState.EXPIRED
            row.detail = "incident closed before approval"
            row.finished_at = at
        await session.flush()
