"""On Postgres every statement of the flush that opens an incident is a round trip to the server,
and the reaction waits for that commit: the result, the incident, the transition, the health alert
with its history and outbox rows, healing's incident and its relapse check. The statements it sends
are pinned here, one each: the alert inserted as it ends up (no savepoint around the insert, no
update after it), its outbox rows in one insert, the transition's repeat of the alert not read again,
healing's incident recorded unless present (not looked up first), the relapse check reading the
component's policy with the last heal, and no root-cause lookup for a component without upstreams."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event, func, insert, select

from app.checks.base import CheckResult, Outcome
from app.db.models import Alert, AlertEvent, Incident, Notification
from app.db.models.healing import AttemptState, HealingAttempt, HealingIncident
from app.db.types import utcnow
from app.monitoring.tracked import Observation
from tests.alerts.test_alert_lifecycle import add_channel
from tests.monitoring.conftest import add_component, mon_settings, monitored

DECISIVE_FLUSH = [
    ("SELECT", "components"),  # the components still there
    ("INSERT", "incidents"),
    ("INSERT", "health_transitions"),
    ("SELECT", "components"),  # the dependency graph (root cause), once per transaction
    ("SELECT", "alerts"),  # the component's active alert, locked
    ("SELECT", "silences"),
    ("SELECT", "channels"),
    ("INSERT", "alerts"),  # ON CONFLICT DO NOTHING: firing and notified, as it ends up
    ("INSERT", "alert_events"),  # raised, notified
    ("INSERT", "notifications"),  # both channels' outbox rows
    ("INSERT", "healing_incidents"),  # ON CONFLICT DO NOTHING
    ("SELECT", "healing_attempts"),  # the last heal, with the component's policy
    ("UPDATE", "alerts"),  # the transition repeats the alert: count, metadata
]


def _table(statement: str) -> str:
    words = statement.replace('"', "").split()
    verb = words[0]
    if verb == "SELECT":
        return words[words.index("FROM") + 1]
    return words[2] if verb in ("INSERT", "DELETE") else words[1]


async def test_the_flush_that_opens_an_incident_sends_one_statement_per_row_kind(db_url, tmp_path):
    if not db_url.startswith("postgresql"):
        pytest.skip("Postgres: each statement is a round trip to the server")
    async with monitored(mon_settings(db_url, tmp_path, security={"ssrf_allowlist": ["127.0.0.1/32"]})) as (
        guard,
        scheduler,
    ):
        await add_component(guard, "victim", {"kind": "http", "url": "http://127.0.0.1:9/ok"})
        await add_channel(guard, "ops")
        await add_channel(guard, "oncall")
        await scheduler.refresh()
        (victim,) = [cid for cid, t in scheduler.tracked.items() if t.name == "victim"]
        async with guard.session() as session:  # a heal long ago: the relapse check finds it
            await session.execute(
                insert(HealingAttempt).values(
                    incident_id=None,
                    incident_key="m:long-ago",
                    attempt_number=1,
                    component="victim",
                    component_id=victim,
                    strategy="restart",
                    state=AttemptState.SUCCEEDED,
                    finished_at=utcnow() - timedelta(days=1),
                )
            )
        writer = scheduler.writer
        writer.add(Observation(victim, "http", CheckResult.up("first")))
        await writer.flush_all()

        sent: list[str] = []

        def note(_connection, _cursor, statement, *_args) -> None:
            sent.append(statement)

        engine = guard.runtime.engine.sync_engine
        event.listen(engine, "before_cursor_execute", note)
        try:
            writer.add(
                Observation(victim, "http", CheckResult(Outcome.DOWN, None, "broken", conclusive=True))
            )
            await writer.flush_all()
        finally:
            event.remove(engine, "before_cursor_execute", note)

        assert scheduler.status_of(victim) == "critical"
        assert [(s.split()[0], _table(s)) for s in sent] == DECISIVE_FLUSH, sent
        async with guard.session() as session:
            (alert,) = (await session.execute(select(Alert).where(Alert.component == "victim"))).scalars()
            assert (alert.status, alert.count, alert.last_notified_at is not None) == ("firing", 2, True)
            assert alert.meta["current"] == "critical"
            events = (
                await session.execute(select(AlertEvent.kind).where(AlertEvent.alert_id == alert.id))
            ).scalars()
            assert list(events) == ["raised", "notified"]
            for counted, expected in (
                (
                    select(func.count()).where(
                        Notification.alert_id == alert.id, Notification.kind == "firing"
                    ),
                    2,
                ),
                (select(func.count()).where(Incident.component_id == victim), 1),
                (select(func.count()).where(HealingIncident.component == "victim"), 1),
            ):
                assert (await session.execute(counted)).scalar_one() == expected
