"""The Postgres database the ``db_url`` fixture hands each test is empty however the last test left it:
the tables it wrote to are emptied and the sequences it used restart, even where its rows were deleted
again (only those are truncated, see ``_truncate_all``)."""

from __future__ import annotations

import asyncio

import asyncpg

from app.db.models import Base
from tests.conftest import _asyncpg_dsn, _truncate_all

USER = (
    "INSERT INTO users (username, password_hash, role, disabled, failed_logins, token_version, "
    "created_at, updated_at) VALUES ($1, 'x', 'admin', false, 0, 0, now(), now()) RETURNING id"
)


def run(url: str, *statements: tuple) -> list:
    async def go() -> list:
        conn = await asyncpg.connect(_asyncpg_dsn(url), timeout=10)
        try:
            return [await conn.fetch(sql, *args) for sql, *args in statements]
        finally:
            await conn.close()

    return asyncio.run(go())


def test_every_table_is_emptied_and_every_used_sequence_restarts(postgres_databases):
    url = postgres_databases.create()
    run(
        url,
        (USER, "gone"),
        (USER, "also-gone"),
        ("DELETE FROM users",),  # no row left, its sequence moved
        (
            "INSERT INTO revoked_tokens (jti, username, revoked_at, expires_at) "
            "VALUES ('j1', 'u', now(), now())",  # a row, and no sequence
        ),
    )
    _truncate_all(url)
    counts = run(url, *((f'SELECT count(*) AS n FROM "{t.name}"',) for t in Base.metadata.sorted_tables))
    assert {t.name: rows[0]["n"] for t, rows in zip(Base.metadata.sorted_tables, counts, strict=True)} == {
        t.name: 0 for t in Base.metadata.sorted_tables
    }
    assert run(url, (USER, "first"))[0][0]["id"] == 1
    _truncate_all(url)  # a database already empty stays so
    assert run(url, (USER, "first-again"))[0][0]["id"] == 1
