"""Fixtures of the fault-scenario suite: a database per dialect for a real guard process, the concurrent
stories told once per dialect, and the measured figures printed at the end of the run (and written
beside the tmp dir)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import DIALECTS
from tests.scenarios.escalation_stories import ESCALATION
from tests.scenarios.harness import FIGURES, HEADER, GuardProcess, NotificationSink, guard_config
from tests.scenarios.stories import SHARED, Story, tell
from tests.scenarios.topology_stories import TOPOLOGY

# The stories told together by ``told``; their names (and so their components) never repeat.
TOLD_TOGETHER = [*SHARED, *TOPOLOGY, *ESCALATION]


def _database(request, workdir: Path) -> tuple[str, Path]:
    if request.param == "sqlite":
        path = workdir / "guard.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}", workdir
    return request.getfixturevalue("postgres_databases").create(), workdir


@pytest.fixture(scope="module", params=DIALECTS)
def scenario_db(request, tmp_path_factory) -> tuple[str, Path]:
    """(database URL, work dir) shared by a module: a migrated SQLite file or a scratch Postgres database."""
    return _database(request, tmp_path_factory.mktemp(f"scenarios-{request.param}"))


@pytest.fixture(params=DIALECTS)
def guard_db(request, tmp_path) -> tuple[str, Path]:
    """(database URL, work dir) for one test."""
    return _database(request, tmp_path)


@pytest.fixture(scope="session", params=DIALECTS)
def told(request, tmp_path_factory) -> dict[str, Story]:
    """Every concurrent story (test_incident_stories.py, test_topology_and_escalation_stories.py) told
    at once against one real guard per dialect, each on its own components: the two modules' tests
    read their stories from it. Twice the healing slots of one module's guard, so no story waits for a
    slot the other module's stories hold."""
    url, workdir = _database(request, tmp_path_factory.mktemp(f"stories-{request.param}"))
    guard = GuardProcess(url, workdir / "stories-guard", config=guard_config(max_concurrent=20))
    sink = NotificationSink()
    try:
        return tell(TOLD_TOGETHER, guard, workdir / "stories", sink)
    finally:
        sink.close()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not FIGURES:
        return
    lines = [HEADER, *(f.row() for f in FIGURES)]
    terminalreporter.write_sep(
        "=", "fault scenarios: measured figures (bound = period x threshold + action + 2 s)"
    )
    for line in lines:
        terminalreporter.write_line(line)
    target = os.environ.get("PIPELINE_SCENARIO_FIGURES")
    path = Path(target) if target else config._tmp_path_factory.getbasetemp() / "scenario-figures.txt"
    path.write_text("\n".join(lines) + "\n")
    terminalreporter.write_line(f"(written to {path})")
