"""Shared helpers for the metrics benchmarks: fresh databases, an ingest user, a real uvicorn server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg

from app.db.migrate import upgrade_sync

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
PASSWORD = "bench-password-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def create_pg_database(base: str) -> tuple[str, str]:
    """CREATE DATABASE beside ``base`` (postgresql://...); returns (name, asyncpg dsn)."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(base, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name, base.rpartition("/")[0] + "/" + name


async def drop_pg_database(base: str, name: str) -> None:
    conn = await asyncpg.connect(base, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@contextlib.contextmanager
def fresh_pg_database(base: str) -> Iterator[str]:
    """A new, empty database beside ``base``; yields its asyncpg dsn, drops it after."""
    name, dsn = asyncio.run(create_pg_database(base))
    try:
        yield dsn
    finally:
        asyncio.run(drop_pg_database(base, name))


@contextlib.contextmanager
def migrated_pg_database(base: str) -> Iterator[str]:
    """A fresh database beside ``base`` with this tree's schema; yields its asyncpg dsn, drops it after."""
    with fresh_pg_database(base) as dsn:
        upgrade_sync(sa_url(dsn))
        yield dsn


def sa_url(dsn: str) -> str:
    return (
        dsn.replace("postgresql://", "postgresql+asyncpg://", 1) if dsn.startswith("postgresql://") else dsn
    )


# Run by the server's own tree (``Server.app_dir``): its migrations, its models. A database migrated by
# a newer tree is refused by an older tree's server ("database schema is at ... but this version needs
# ..."), so a before/after comparison must let each tree build its own schema.
PREPARE_DATABASE = """
import asyncio, sys

from app.auth.tokens import PasswordHasher
from app.config.settings import Settings
from app.db.engine import create_engine, create_sessionmaker
from app.db.migrate import upgrade_sync
from app.db.models import User
from app.db.session import session_scope

database_url, password = sys.argv[1], sys.argv[2]
upgrade_sync(database_url)


async def add_ingest_user():
    engine = create_engine(Settings(database_url=database_url, env="test"))
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            password_hash = PasswordHasher().hash(password)
            session.add(User(username="bench-ingest", password_hash=password_hash, role="ingest"))
    finally:
        await engine.dispose()


asyncio.run(add_ingest_user())
"""


def prepare_database(database_url: str, app_dir: Path) -> None:
    """Migrate ``database_url`` (empty, or already at ``app_dir``'s schema) with ``app_dir``'s
    migrations and add the ``ingest``-role user the benchmarks authenticate as."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    subprocess.run(
        [sys.executable, "-c", PREPARE_DATABASE, database_url, PASSWORD],
        cwd=app_dir,
        env={**env, "PYTHONPATH": str(app_dir)},
        check=True,
        timeout=300,
    )


class Server:
    """``uvicorn app.main:create_app --factory`` with uvloop + httptools on 127.0.0.1, in a subprocess."""

    def __init__(
        self,
        database_url: str,
        data_dir: Path,
        workers: int = 1,
        env: dict[str, str] | None = None,
        app_dir: Path = ROOT,
    ):
        """``app_dir``: the tree the server's code comes from (this one, or another commit's checkout
        for a before/after comparison in one run)."""
        self.app_dir = app_dir
        self.workers = workers
        self.extra_env = env or {}
        self.database_url = database_url
        self.data_dir = data_dir
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Server:  # noqa: PYI034
        prepare_database(self.database_url, self.app_dir)
        env = {
            **os.environ,
            "PIPELINE_DATABASE_URL": self.database_url,
            "PIPELINE_SECRET_KEY": SECRET,
            "PIPELINE_DATA_DIR": str(self.data_dir),
            "PIPELINE_ENV": "test",
            "PIPELINE_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(self.app_dir),
            **self.extra_env,
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app.main:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
                "--log-level",
                "warning",
                "--workers",
                str(self.workers),
            ],
            cwd=self.app_dir,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60  # a loaded machine may take a while to import the app
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the server exited with code {self.proc.returncode} before listening (its log is above)"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.2)
        self.__exit__(None, None, None)
        raise RuntimeError("server did not start")

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process (and its workers) so far."""
        total = 0.0
        pids = [self.proc.pid]
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        if children.exists():
            pids += [int(p) for p in children.read_text().split()]
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
