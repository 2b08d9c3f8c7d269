"""Schemathesis over the guard's own OpenAPI, against a real uvicorn on loopback with an admin token.

Checks every documented operation: no 5xx, responses conform to their declared schema, and status
codes are documented. Runs on SQLite always and on Postgres when the ``db_url`` fixture gives it.
The number of examples per operation is bounded (``FUZZ_EXAMPLES``) so each dialect stays well
under a minute; new routes are picked up automatically from the schema.

Operations that would lock the fuzzer out of its own session (logout revokes the token; changing
or disabling the fuzz admin or resetting its password) are excluded; their behaviour is tested
directly in the auth tests.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from live_guard import ADMIN_USER, serve_guard
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance

FUZZ_EXAMPLES = int(os.environ.get("PIPELINE_FUZZ_EXAMPLES", "15"))
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]


@pytest.fixture
def live_guard(settings):
    with serve_guard(settings) as live:
        live.admin_token = live.token()
        yield live


def _operations(url: str):
    loaded = schemathesis.openapi.from_url(f"{url}/openapi.json")
    for result in loaded.get_all_operations():
        yield result.ok()  # an invalid operation definition fails the test here, which is right


def _locks_out_the_fuzzer(case) -> bool:
    path = case.operation.path
    if path == "/api/v1/auth/logout":
        return True
    if path.startswith("/api/v1/users/{username}") and case.method.upper() in {"PATCH", "POST", "DELETE"}:
        return (case.path_parameters or {}).get("username") == ADMIN_USER
    return False


def test_api_conforms_to_its_schema(live_guard):
    # schemathesis' own pytest plugin (from_fixture/parametrize) does not run under pytest 9 yet, so
    # each operation gets its own bounded Hypothesis run and the failures are reported together.
    headers = {"Authorization": f"Bearer {live_guard.admin_token}"}
    failures: list[str] = []
    operations = list(_operations(live_guard.url))
    assert len(operations) >= 10, [op.label for op in operations]
    for operation in operations:
        try:
            _fuzz(operation, headers)()
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)


def _fuzz(operation, headers):
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]

    @hypothesis_settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, derandomize=True,
                         suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    @given(data=st.data())
    def run(data):
        mode = data.draw(st.sampled_from(modes))
        case = data.draw(operation.as_strategy(generation_mode=mode))
        if _locks_out_the_fuzzer(case):
            return
        case.call_and_validate(headers=headers, checks=CHECKS, timeout=15)

    return run
