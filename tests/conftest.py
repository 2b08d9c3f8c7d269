"""Shared fixtures: every database test runs on SQLite and, when PIPELINE_TEST_POSTGRES_URL is set,
on Postgres too. The schema is built by the migrations, never by create_all.

CI sets PIPELINE_TEST_REQUIRE_POSTGRES=1: an unreachable Postgres then fails the run instead of
quietly testing SQLite alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import hypothesis
import pytest

from app.auth.permissions import Role
from app.auth.tokens import PasswordHasher
from app.config.settings import Settings
from app.db.migrate import upgrade_sync
from app.db.models import Base

# Loopback HTTP/TCP targets (http_target, garbage_target, banner_target, silent_target, closed_port), and
# targets on their own threads for a guard whose loop is blocked (http_thread_target, banner_thread_target).
pytest_plugins = ["tests.support.loopback", "tests.support.late_guard"]

POSTGRES_URL = os.environ.get("PIPELINE_TEST_POSTGRES_URL")
REQUIRE_POSTGRES = os.environ.get("PIPELINE_TEST_REQUIRE_POSTGRES") == "1"
DIALECTS = ["sqlite"] + (["postgres"] if POSTGRES_URL or REQUIRE_POSTGRES else [])
TEST_PASSWORD = "correct-horse-battery-staple"
TEST_SECRET = "test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"


# Property tests judge behaviour, not speed: Hypothesis' default 200 ms deadline per example is a timed
# assertion, and it failed on a loaded machine.
hypothesis.settings.register_profile("guard", deadline=None)
hypothesis.settings.load_profile("guard")


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


async def _pg_admin(url: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_asyncpg_dsn(url), timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


class PostgresDatabases:
    """Creates uniquely named databases beside the given one, so parallel runs never collide."""

    def __init__(self, url: str):
        self.url = url
        self.created: list[str] = []

    def create(self, migrate: bool = True) -> str:
        name = f"guard_test_{uuid.uuid4().hex[:12]}"
        try:
            asyncio.run(_pg_admin(self.url, f'CREATE DATABASE "{name}"'))
        except Exception as exc:  # noqa: BLE001
            pytest.fail(
                f"Postgres at {self.url} is unreachable or refused CREATE DATABASE: {exc}", pytrace=False
            )
        self.created.append(name)
        url = _with_database(self.url, name)
        if migrate:
            upgrade_sync(url)
        return url

    def drop_all(self) -> None:
        for name in self.created:
            with contextlib.suppress(Exception):  # best effort cleanup
                asyncio.run(_pg_admin(self.url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_databases():
    if not (POSTGRES_URL or REQUIRE_POSTGRES):
        pytest.skip("PIPELINE_TEST_POSTGRES_URL not set")
    dbs = PostgresDatabases(POSTGRES_URL or "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    yield dbs
    dbs.drop_all()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "guard.db"
    upgrade_sync(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_template_url(postgres_databases) -> str:
    return postgres_databases.create()


# Empties the tables a test wrote to: those with a row, and those whose sequence was used since it was
# last restarted (a row inserted and deleted again still moved it). TRUNCATE costs a new file per table
# and index, so truncating every table before each test was most of a Postgres test's set-up.
_TRUNCATE_USED = """
DO $$
DECLARE
  tables text[] := ARRAY[{tables}];
  used text[] := ARRAY(
    SELECT DISTINCT c.relname
    FROM pg_sequences s
    JOIN pg_depend d ON d.classid = 'pg_class'::regclass
      AND d.objid = format('%I.%I', s.schemaname, s.sequencename)::regclass
      AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
    JOIN pg_class c ON c.oid = d.refobjid
    WHERE s.last_value IS NOT NULL AND c.relname = ANY(ARRAY[{tables}])
  );
  t text;
  has_rows boolean;
BEGIN
  FOREACH t IN ARRAY tables LOOP
    IF NOT t = ANY(used) THEN
      EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I)', t) INTO has_rows;
      IF has_rows THEN
        used := used || t;
      END IF;
    END IF;
  END LOOP;
  IF cardinality(used) > 0 THEN
    EXECUTE 'TRUNCATE ' || (SELECT string_agg(format('%I', u), ', ') FROM unnest(used) AS u)
      || ' RESTART IDENTITY CASCADE';
  END IF;
END $$;
"""


def _truncate_all(url: str) -> None:
    """Every table empty and every sequence restarted, as after ``TRUNCATE <all> RESTART IDENTITY``."""
    tables = ", ".join(f"'{t.name}'" for t in Base.metadata.sorted_tables)
    asyncio.run(_pg_admin(url, _TRUNCATE_USED.format(tables=tables)))


@pytest.fixture(params=DIALECTS)
def db_url(request, tmp_path) -> str:
    """A migrated, empty database of each dialect under test."""
    if request.param == "sqlite":
        path = tmp_path / "guard.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    url = request.getfixturevalue("postgres_template_url")
    _truncate_all(url)
    return url


def make_settings(db_url: str, tmp_path: Path, **overrides) -> Settings:
    base = {
        "env": "test",
        "database_url": db_url,
        "data_dir": tmp_path / "var",
        "security": {"secret_key": TEST_SECRET, "rate_limiting": {"enabled": False}},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return Settings(**base)


_HASH_CACHE: dict[str, str] = {}


def password_hash(password: str = TEST_PASSWORD) -> str:
    if password not in _HASH_CACHE:
        _HASH_CACHE[password] = PasswordHasher().hash(password)
    return _HASH_CACHE[password]


class Guard:
    """A running app (lifespan entered) with an httpx client and helpers for users and tokens."""

    def __init__(self, app, client: httpx.AsyncClient):
        self.app = app
        self.client = client
        self.runtime = app.state.runtime
        self._tokens: dict[str, str] = {}

    @asynccontextmanager
    async def session(self):
        from app.db.session import session_scope

        async with session_scope(self.runtime.sessionmaker) as session:
            yield session

    async def add_user(
        self, username: str, role: Role | str, *, password: str = TEST_PASSWORD, disabled: bool = False
    ):
        from app.db.models import User

        async with self.session() as session:
            session.add(
                User(
                    username=username,
                    password_hash=password_hash(password),
                    role=str(role),
                    disabled=disabled,
                )
            )

    async def token(self, role: Role | str) -> str:
        role = str(role)
        if role not in self._tokens:
            username = f"{role}-user"
            await self.add_user(username, role)
            response = await self.client.post(
                "/api/v1/auth/token", data={"username": username, "password": TEST_PASSWORD}
            )
            assert response.status_code == 200, response.text
            self._tokens[role] = response.json()["access_token"]
        return self._tokens[role]

    async def headers(self, role: Role | str = Role.ADMIN) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token(role)}"}


@asynccontextmanager
async def running_guard(settings: Settings, *, build_services=None, app_hook=None) -> AsyncIterator[Guard]:
    from app.main import create_app

    app = create_app(settings, build_services=build_services or (lambda rt: []))
    if app_hook is not None:
        app_hook(app)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Guard(app, client)


@pytest.fixture
def settings(db_url, tmp_path) -> Settings:
    return make_settings(db_url, tmp_path)


@pytest.fixture
async def guard(settings) -> AsyncIterator[Guard]:
    async with running_guard(settings) as g:
        yield g


# Story sets: fixtures that start real guards for minutes and are shared by a module's tests
# (``scenario_db``) or by two modules (``told``). Under pytest-xdist (`make test`) every test of one set
# and dialect runs on the same worker, so each set is told once per dialect, not once per worker; every
# other test is scheduled on its own. The scheduler sees node ids only, so the modules are listed here
# (a module using one of the fixtures without being listed stops the run at collection).
_STORY_FIXTURES = ("told", "scenario_db")
_STORY_MODULES = {
    "tests/scenarios/test_incident_stories.py": "told",
    "tests/scenarios/test_topology_and_escalation_stories.py": "told",
    "tests/scenarios/test_heal_stories.py": "healed",
    "tests/scenarios/test_batch_rerun_stories.py": "reruns",
    "tests/scenarios/test_blip_stories.py": "blipped",
    "tests/scenarios/test_restart_stories.py": "restarted",
    "tests/scenarios/test_incident_lives.py": "campaign",
}


def story_set(nodeid: str) -> str | None:
    """``told-postgres`` for ``tests/scenarios/test_incident_stories.py::test_story[postgres-chain]``;
    None for a test of no story set."""
    path, _, rest = nodeid.partition("::")
    name = _STORY_MODULES.get(path)
    if name is None:
        return None
    dialect = rest.partition("[")[2].rstrip("]").split("-")[0]
    return f"{name}-{dialect}"


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "load":
        return None  # another distribution asked for on the command line
    from xdist.scheduler import LoadScopeScheduling

    class StorySets(LoadScopeScheduling):
        """Load balancing test by test, but a story set's tests as one unit (the largest units first)."""

        def _split_scope(self, nodeid: str) -> str:
            return story_set(nodeid) or nodeid

    return StorySets(config, log)


def pytest_collection_modifyitems(config, items):  # noqa: ARG001
    for item in items:
        uses = [name for name in _STORY_FIXTURES if name in getattr(item, "fixturenames", ())]
        if uses and story_set(item.nodeid) is None:
            raise pytest.UsageError(
                f"{item.nodeid} uses the story fixture {uses[0]!r}: list its module in "
                "tests/conftest.py _STORY_MODULES, or each xdist worker tells the stories again"
            )
