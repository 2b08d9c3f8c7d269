"""Deleting a component while its check results are being written: the delete waits for the writer
and succeeds; neither is aborted as a deadlock.

A result flush inserts the component's check result (which locks the component's row against
deletion) and then updates its state row; the delete used to delete the state row first and then
wait for the component row: on Postgres the two waited for each other until the database aborted
one (a 500 on the API, or a failed flush). Here the flush is a real transaction on its own
connection, doing the flush's two writes in the flush's order around the API's DELETE."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.db_locks import waiting_on_a_lock


async def test_delete_waits_for_a_flush_of_the_same_component(guard, db_url):
    admin = await guard.headers("admin")
    created = await guard.client.post("/api/v1/components", headers=admin, json={"name": "gone"})
    assert created.status_code == 201, created.text
    component_id = created.json()["id"]
    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as flush:
            transaction = await flush.begin()
            state = await flush.execute(
                text("SELECT count(*) FROM component_states WHERE component_id = :id"), {"id": component_id}
            )
            assert state.scalar_one() == 1
            await flush.execute(
                text(
                    "INSERT INTO check_results (component_id, observed_at, outcome, detail) "
                    "VALUES (:id, CURRENT_TIMESTAMP, 'down', 'x')"
                ),
                {"id": component_id},
            )
            deleting = asyncio.create_task(guard.client.delete("/api/v1/components/gone", headers=admin))
            async with asyncio.timeout(30):
                while not await waiting_on_a_lock(engine):  # the delete is blocked by this transaction
                    assert not deleting.done(), deleting.result().text
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)  # SQLite: let the delete reach its busy wait
            await flush.execute(
                text("UPDATE component_states SET consecutive_failures = 1 WHERE component_id = :id"),
                {"id": component_id},
            )
            await transaction.commit()
        deleted = await asyncio.wait_for(deleting, 60)
        assert deleted.status_code == 204, deleted.text
        gone = await guard.client.get("/api/v1/components/gone", headers=admin)
        assert gone.status_code == 404
    finally:
        await engine.dispose()
