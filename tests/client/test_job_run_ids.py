"""The SDK's ``job()`` names each run (a new UUID, ``run.rid``) and sends it with its ``start`` and its
finish, sync and async, against a real guard: the guard stores both under that run, and a stuck run's
late ``fail`` after a recovery action started judges nothing (docs/LIFECYCLE.md rule 12)."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import select

from app.client import AsyncGuardClient, GuardAPIError, GuardClient
from app.client.core import RunIdSupport
from app.db.engine import create_engine, create_sessionmaker
from app.db.models import Component
from app.db.session import session_scope
from tests.monitoring.runs import action_in_flight, backdate_start, component_state, stored_pings

NIGHTLY = {"name": "nightly", "check": {"kind": "heartbeat", "period": "1h", "max_runtime": "20m"}}


class Database:
    """The live guard's database, as the helpers of tests/monitoring/runs.py read it (``session()``)."""

    def __init__(self, sessionmaker):
        self.sessionmaker = sessionmaker

    def session(self):
        return session_scope(self.sessionmaker)


@asynccontextmanager
async def database(settings):
    engine = create_engine(settings)
    try:
        yield Database(create_sessionmaker(engine))
    finally:
        await engine.dispose()


async def _component_id(db) -> int:
    async with db.session() as session:
        return (await session.execute(select(Component.id).where(Component.name == "nightly"))).scalar_one()


async def _stored(settings) -> list[tuple[str, str | None]]:
    async with database(settings) as db:
        return [(status, rid) for status, rid, _ in await stored_pings(db)]


def _two_runs(stored, first: str, second: str) -> None:
    """A run that succeeded then one that failed, each under its own new run id."""
    assert first != second and all(uuid.UUID(r).version == 4 for r in (first, second))
    assert stored == [("start", first), ("success", first), ("start", second), ("fail", second)]


def test_job_sends_one_run_id_with_its_start_and_its_finish(live):
    with GuardClient(live.url, live.token(), raise_errors=True, flush_interval=0) as guard:
        guard.create_component(NIGHTLY)
        token = guard.request("POST", "/api/v1/components/nightly/ping-token")["token"]
        with guard.job("nightly", ping_token=token) as run:
            first = run.rid

        @guard.job("nightly")  # the decorator: a new run, and a new id, per call
        def work():
            raise ValueError("bad input")

        with pytest.raises(ValueError):
            work()
        stored = asyncio.run(_stored(live.settings))
        _two_runs(stored, first, stored[2][1])
        rid = uuid.uuid4()  # heartbeat() takes one too, a UUID or its text
        answer = guard.heartbeat("nightly", "success", 1.5, ping_token=token, rid=rid)
        assert answer["rid"] == str(rid) and answer["judged"] is True, answer


async def test_async_job_sends_one_run_id_with_its_start_and_its_finish(live):
    async with AsyncGuardClient(live.url, live.token(), raise_errors=True, flush_interval=0) as guard:
        await guard.create_component(NIGHTLY)
        token = (await guard.request("POST", "/api/v1/components/nightly/ping-token"))["token"]
        async with guard.job("nightly", ping_token=token) as run:
            first = run.rid

        @guard.job("nightly")
        async def work():
            raise RuntimeError("nope")

        with pytest.raises(RuntimeError):
            await work()
        stored = await _stored(live.settings)
        _two_runs(stored, first, stored[2][1])
        rid = str(uuid.uuid4()).upper()
        answer = await guard.heartbeat("nightly", "start", ping_token=token, rid=rid)
        assert answer["rid"] == rid.lower(), answer


def test_a_stuck_jobs_late_fail_after_the_recovery_action_started_judges_nothing(live):
    """The run entered ``job()`` long ago and hangs; the guard's recovery action started since; the run
    then fails: its ``fail`` is the replaced run's, stored, and the component's state is untouched.
    The next run (the rerun) is judged on its own."""

    async def replaced() -> None:
        async with database(live.settings) as db:
            component = {"name": "nightly", "id": await _component_id(db)}
            ((_, rid, _),) = await stored_pings(db)  # the run's start, as the guard stored it
            await backdate_start(db, component["id"], rid, 600)
            await action_in_flight(db, component, 10)

    async def state():
        async with database(live.settings) as db:
            return await component_state(db, await _component_id(db))

    with GuardClient(live.url, live.token(), raise_errors=True, flush_interval=0) as guard:
        guard.create_component(NIGHTLY)
        with pytest.raises(TimeoutError), guard.job("nightly") as stuck:
            asyncio.run(replaced())
            raise TimeoutError("stuck on a lock")
        after = asyncio.run(state())
        assert after.last_ping_status == "start" and after.consecutive_failures == 0, vars(after)
        with guard.job("nightly") as rerun:
            pass
        assert asyncio.run(state()).last_ping_status == "success"
        assert asyncio.run(_stored(live.settings)) == [
            ("start", stuck.rid),
            ("fail", stuck.rid),
            ("start", rerun.rid),
            ("success", rerun.rid),
        ]


# What a guard from before run ids answers a body naming its run (its body model forbids extra fields).
RID_UNKNOWN = {
    "error": {
        "type": "validation_error",
        "message": "the request is not valid",
        "details": {
            "fields": [
                {"field": "body.rid", "message": "Extra inputs are not permitted", "type": "extra_forbidden"}
            ]
        },
        "timestamp": "2026-12-07T08:58:27.073227+00:00",
    }
}
BEATS = "/api/v1/components/nightly/heartbeat"


async def test_a_guard_that_takes_no_run_ids_still_gets_the_jobs_heartbeats(stub, live):
    """An SDK newer than its guard: the guard refuses the unknown ``rid``; the heartbeat is sent again
    without it (the run unnamed, as before), not lost, and the client's next heartbeats go without it at
    once (one request each). Any other refusal stays an error."""
    async with AsyncGuardClient(stub.url, stub.token, raise_errors=True, flush_interval=0) as guard:
        await guard.create_component(NIGHTLY)
        stub.script("POST", BEATS, (422, RID_UNKNOWN))  # the answer to the next heartbeat only
        async with guard.job("nightly"):
            pass
        assert await _stored(live.settings) == [("start", None), ("success", None)]
        with GuardClient(stub.url, stub.token, raise_errors=True, flush_interval=0) as sync_guard:
            stub.script("POST", BEATS, (422, RID_UNKNOWN))
            assert sync_guard.heartbeat("nightly", "fail", rid=uuid.uuid4())["rid"] is None
            refused = {**RID_UNKNOWN["error"], "details": {"fields": [{"field": "body.status"}]}}
            stub.script("POST", BEATS, (422, {"error": refused}))
            with pytest.raises(GuardAPIError):
                sync_guard.heartbeat("nightly", "fail", rid=uuid.uuid4())
    sent = [("rid" in b.body, b.body.get("status")) for b in stub.calls("POST", BEATS)]
    assert sent == [
        (True, "start"),
        (False, "start"),
        (False, "success"),
        (True, "fail"),
        (False, "fail"),
        (False, "fail"),
    ]


def test_a_refused_run_id_is_offered_again_after_a_while():
    """A long-lived client outlives its guard's upgrade: after ``retry_after`` it names runs again."""
    now = [0.0]
    support = RunIdSupport(retry_after=3600, clock=lambda: now[0])
    body = {"status": "start", "rid": str(uuid.uuid4())}
    assert support.body(body) == body
    support.refused()
    now[0] = 3599.0
    assert support.body(body) == {"status": "start"}
    now[0] = 3600.0
    assert support.body(body) == body
