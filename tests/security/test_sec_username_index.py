"""Usernames that differ only in case are one account (the service's check:
test_sec_username_case.py); the database refuses the second too (a unique index on lower(username)),
a creation that loses the race to another gets the same 409 as one the check refuses, and the
migration that adds the index stops, naming them, on a database that already holds such names."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.migrate import alembic_config, upgrade_sync
from tests.conftest import DIALECTS, TEST_PASSWORD, password_hash

PASSWORD = "a long enough password"


async def test_the_database_refuses_names_differing_only_in_case(guard):
    await guard.add_user("Carol", "viewer")
    with pytest.raises(IntegrityError):
        await guard.add_user("cAROL", "viewer")


async def test_a_creation_losing_the_race_gets_the_same_409(guard, db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("needs two writers at once (Postgres)")
    admin = await guard.headers("admin")
    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as other:
            # Another request's insert, not committed yet: the API's own check cannot see it.
            await other.execute(
                sa.text(
                    "INSERT INTO users (username, password_hash, role, disabled, failed_logins,"
                    " token_version, created_at, updated_at)"
                    " VALUES ('Frank', :h, 'viewer', false, 0, 0, now(), now())"
                ),
                {"h": password_hash(TEST_PASSWORD)},
            )
            post = asyncio.create_task(
                guard.client.post(
                    "/api/v1/users", headers=admin, json={"username": "FRANK", "password": PASSWORD}
                )
            )
            async with engine.connect() as watcher:
                for _ in range(600):
                    waiting = (
                        await watcher.execute(
                            sa.text(
                                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                " AND wait_event_type = 'Lock'"
                            )
                        )
                    ).scalar_one()
                    await watcher.rollback()  # a new snapshot of pg_stat_activity each time
                    if waiting:
                        break
                    assert not post.done(), post.result().text
                    await asyncio.sleep(0.05)
                else:
                    pytest.fail("the API's insert never waited for the other transaction")
            await other.commit()
            refused = await post
    finally:
        await engine.dispose()
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["message"] == "user 'Frank' already exists"


@pytest.fixture(params=DIALECTS)
def bare_url(request, tmp_path):
    """An empty database of each dialect, not migrated."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'guard.db'}"
    return request.getfixturevalue("postgres_databases").create(migrate=False)


def _execute(url: str, statement: str) -> None:
    async def run() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(sa.text(statement))
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_upgrade_stops_on_case_duplicates_until_they_are_resolved(bare_url):
    upgrade_sync(bare_url, "0890_lease_fillfactor")
    insert = (
        "INSERT INTO users (id, username, password_hash, role, disabled, failed_logins, token_version, "
        "created_at, updated_at) VALUES ({id}, '{name}', 'x', 'viewer', false, 0, 0, "
        "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
    )
    for user_id, name in ((1, "Erin"), (2, "erin"), (3, "other")):
        _execute(bare_url, insert.format(id=user_id, name=name))
    with pytest.raises(RuntimeError) as refused:
        command.upgrade(alembic_config(bare_url), "head")
    message = str(refused.value)
    assert "'Erin' (id 1)" in message and "'erin' (id 2)" in message and "'other'" not in message
    _execute(bare_url, "UPDATE users SET username = 'erin-2' WHERE id = 2")
    upgrade_sync(bare_url)
    with pytest.raises(IntegrityError):
        _execute(bare_url, insert.format(id=4, name="ERIN"))
