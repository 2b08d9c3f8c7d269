"""SQLite mode is single-replica: a second guard on the same file is refused, with the holder's pid."""

import os
import subprocess
import sys

import pytest

from app.core.errors import ConfigurationError
from app.db.sqlite_lock import acquire_sqlite_lock, sqlite_lock_path
from tests.conftest import make_settings, running_guard


async def test_second_app_on_the_same_file_is_refused(sqlite_template, tmp_path):
    import shutil

    db = tmp_path / "guard.db"
    shutil.copy(sqlite_template, db)
    settings = make_settings(f"sqlite+aiosqlite:///{db}", tmp_path)
    async with running_guard(settings):
        # flock belongs to an open file description: a second open in the same process conflicts too.
        with pytest.raises(ConfigurationError) as refused:
            async with running_guard(settings):
                pass
        message = str(refused.value)
        assert f"process {os.getpid()}" in message and "single replica" in message and "Postgres" in message
        # Another file is independent.
        other = tmp_path / "other.db"
        shutil.copy(sqlite_template, other)
        async with running_guard(make_settings(f"sqlite+aiosqlite:///{other}", tmp_path)):
            pass
    # Released on shutdown: the same file can be used again.
    async with running_guard(settings):
        pass


def test_lock_is_held_against_another_process_and_dies_with_it(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'g.db'}"
    code = (
        "import sys, time; from app.db.sqlite_lock import acquire_sqlite_lock; "
        f"l = acquire_sqlite_lock({url!r}); print('locked', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigurationError, match=f"process {child.pid}"):
            acquire_sqlite_lock(url)
    finally:
        child.kill()  # kill -9: the kernel drops the flock with the process
        child.wait()
    lock = acquire_sqlite_lock(url)
    lock.release()


def test_memory_and_postgres_urls_take_no_lock():
    assert sqlite_lock_path("sqlite+aiosqlite:///:memory:") is None
    assert sqlite_lock_path("postgresql+asyncpg://u@h/db") is None
    assert str(sqlite_lock_path("sqlite+aiosqlite:////tmp/x/guard.db")) == "/tmp/x/guard.db.lock"
