"""The migrations build exactly the schema the models describe, on both dialects."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.errors import ConfigurationError
from app.db.migrate import head_revision, upgrade_sync
from app.db.models import Base
from tests.conftest import make_settings, running_guard


def _diff(sync_conn):
    context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
    return compare_metadata(context, Base.metadata)


async def test_models_and_migrations_agree(db_url):
    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff)
    finally:
        await engine.dispose()
    assert diff == [], f"models and migrations disagree: {diff}"


async def test_service_refuses_to_start_when_schema_is_behind(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    settings = make_settings(url, tmp_path)
    with pytest.raises(ConfigurationError, match="run `pipeline-guard db upgrade`"):
        async with running_guard(settings):
            pass


def test_upgrade_is_idempotent_and_reaches_head(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'guard.db'}"
    upgrade_sync(url)
    upgrade_sync(url)
    import sqlite3

    version = (
        sqlite3.connect(tmp_path / "guard.db")
        .execute("select version_num from alembic_version")
        .fetchone()[0]
    )
    assert version == head_revision()


def test_downgrade_to_base_and_back(tmp_path):
    from alembic import command

    from app.db.migrate import alembic_config

    url = f"sqlite+aiosqlite:///{tmp_path / 'guard.db'}"
    upgrade_sync(url)
    command.downgrade(alembic_config(url), "base")
    upgrade_sync(url)
