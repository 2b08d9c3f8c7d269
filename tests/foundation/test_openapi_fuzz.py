"""Schemathesis over the guard's own OpenAPI, against a real uvicorn on loopback with an admin token,
with **all** of schemathesis' checks and its coverage phase (which also sends undeclared methods).

Among others this fails on: a 5xx; a response or status code the schema does not declare; a 405
without an ``Allow`` header naming every method of the path (``unsupported_method``,
``allow_header_conformance``); schema-valid input refused (``positive_data_acceptance``: the schema
promised more than the API accepts); schema-violating input accepted (``negative_data_rejection``:
lax coercions such as ``0.5`` read as a date-time); an operation that answers without the
credentials it declares (``ignored_auth``). Runs on SQLite always and on Postgres when the ``db_url``
fixture gives it. Examples per operation are bounded (``PIPELINE_FUZZ_EXAMPLES``) and generation is
deterministic, so each dialect stays around a minute and a failure reproduces; new routes are picked
up from the schema. ``schemathesis.toml`` beside this file names the few operations that may also
answer 4xx to schema-valid input, each with the rule JSON Schema cannot state (cross-field or
clock-relative), so every other "valid input refused" fails here.

As a viewer and as an operator (``test_api_conforms_to_its_schema_as_each_role``, SQLite only, about
30 s each), the same checks run on the operations about one named component, which an admin creates
first and every ``{name}``/``{component}`` of a path names; a role's writes then meet a real object.

Operations that would lock the fuzzer out of its own session (logout revokes the token; changing,
disabling or resetting a user, which may be the fuzz admin) are excluded; their behaviour is tested
directly in the auth tests. The CLI is used because schemathesis' pytest plugin does not run under
pytest 9 yet, and only the CLI's engine runs the coverage phase.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from live_guard import ADMIN_PASSWORD, serve_guard

from app.auth.permissions import Role
from app.cli.bootstrap import create_user
from app.config.settings import Settings
from tests.conftest import make_settings

FUZZ_EXAMPLES = int(os.environ.get("PIPELINE_FUZZ_EXAMPLES", "8"))
# Operations whose documents carry rules JSON Schema cannot state, with the reason for each.
CONFIG = Path(__file__).with_name("schemathesis.toml")
ROLE_FUZZ_EXAMPLES = int(os.environ.get("PIPELINE_FUZZ_ROLE_EXAMPLES", "2"))
# The operations on one named object: where a role's answer differs (403, masks, which writes pass).
ROLE_PATHS = r"\{(name|component)\}"
SEEDED = "fuzz-etl"


@pytest.fixture
def live_guard(settings):
    with serve_guard(settings) as live:
        live.admin_token = live.token()
        yield live


@pytest.mark.timeout(900)
def test_api_conforms_to_its_schema(live_guard, tmp_path):
    _run_schemathesis(live_guard.url, live_guard.admin_token, tmp_path, FUZZ_EXAMPLES)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPERATOR])
def test_api_conforms_to_its_schema_as_each_role(sqlite_template, role, tmp_path):
    """The same checks as a viewer and as an operator (SQLite only: what differs by role does not
    differ by dialect), on the operations about one named object, which an admin first creates and
    every ``{name}``/``{component}`` of a path names: so a role's writes reach a real component, not
    a 404. About 30 s per role; the admin run above covers every operation on both dialects."""
    database = tmp_path / "guard.db"
    shutil.copy(sqlite_template, database)
    settings = make_settings(f"sqlite+aiosqlite:///{database}", tmp_path)
    with serve_guard(settings, role=role) as live:
        _seed(live.url, settings)
        config = tmp_path / "schemathesis.toml"
        config.write_text(
            CONFIG.read_text() + f'\n[parameters]\n"path.name" = "{SEEDED}"\n"path.component" = "{SEEDED}"\n'
        )
        _run_schemathesis(
            live.url,
            live.token(),
            tmp_path,
            ROLE_FUZZ_EXAMPLES,
            "--include-path-regex",
            ROLE_PATHS,
            config=config,
        )


def _seed(url: str, settings: Settings) -> None:
    """A heartbeat component named ``SEEDED``, created by an admin (a viewer may not)."""
    create_user(settings, "fuzz-seeder", ADMIN_PASSWORD, Role.ADMIN)
    admin = httpx.post(
        f"{url}/api/v1/auth/token", data={"username": "fuzz-seeder", "password": ADMIN_PASSWORD}, timeout=30
    )
    admin.raise_for_status()
    created = httpx.post(
        f"{url}/api/v1/components",
        json={"name": SEEDED, "check": {"kind": "heartbeat", "period": 3600}},
        headers={"Authorization": f"Bearer {admin.json()['access_token']}"},
        timeout=30,
    )
    assert created.status_code == 201, created.text


def _run_schemathesis(
    url: str, token: str, tmp_path: Path, examples: int, *extra: str, config: Path = CONFIG
) -> None:
    schemathesis = Path(sys.executable).with_name("schemathesis")
    command = [
        str(schemathesis),
        "--config-file",
        str(config),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(examples),
        "--generation-deterministic",
        "--workers",
        "1",
        "--request-timeout",
        "15",
        "--continue-on-failure",
        "--suppress-health-check",
        "all",
        "--no-color",
        "--warnings",
        "off",
        "-H",
        f"Authorization: Bearer {token}",
        "--exclude-path",
        "/api/v1/auth/logout",
        "--exclude-path-regex",
        r"^/api/v1/users/\{username\}",
        *extra,
    ]
    # cwd: schemathesis keeps a cache of crashes in the working directory.
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert "Tested:" in output, output[-5000:]
    assert result.returncode == 0, output[-30000:]
