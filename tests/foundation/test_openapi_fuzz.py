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

Operations that would lock the fuzzer out of its own session (logout revokes the token; changing,
disabling or resetting a user, which may be the fuzz admin) are excluded; their behaviour is tested
directly in the auth tests. The CLI is used because schemathesis' pytest plugin does not run under
pytest 9 yet, and only the CLI's engine runs the coverage phase.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from live_guard import serve_guard

FUZZ_EXAMPLES = int(os.environ.get("PIPELINE_FUZZ_EXAMPLES", "8"))
# Operations whose documents carry rules JSON Schema cannot state, with the reason for each.
CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.fixture
def live_guard(settings):
    with serve_guard(settings) as live:
        live.admin_token = live.token()
        yield live


@pytest.mark.timeout(900)
def test_api_conforms_to_its_schema(live_guard, tmp_path):
    schemathesis = Path(sys.executable).with_name("schemathesis")
    command = [
        str(schemathesis),
        "--config-file",
        str(CONFIG),
        "run",
        f"{live_guard.url}/openapi.json",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(FUZZ_EXAMPLES),
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
        f"Authorization: Bearer {live_guard.admin_token}",
        "--exclude-path",
        "/api/v1/auth/logout",
        "--exclude-path-regex",
        r"^/api/v1/users/\{username\}",
    ]
    # cwd: schemathesis keeps a cache of crashes in the working directory.
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert "Tested:" in output, output[-5000:]
    assert result.returncode == 0, output[-30000:]
