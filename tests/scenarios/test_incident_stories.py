"""Incident stories told against one real guard per dialect, all at once (one thread each): a dependency
chain (HTTP, and a batch job watched by its heartbeat), two independent faults at the same moment,
a relapse inside and after the stick window, edits over the API while an incident is open.
See stories.py for each story's script and what it asserts."""

from __future__ import annotations

import pytest

from tests.scenarios.harness import GuardProcess, NotificationSink, guard_config
from tests.scenarios.stories import SHARED, tell

pytestmark = [pytest.mark.scenarios, pytest.mark.timeout(360)]


@pytest.fixture(scope="module")
def told(scenario_db):
    url, workdir = scenario_db
    guard = GuardProcess(url, workdir / "stories-guard", config=guard_config())
    sink = NotificationSink()
    try:
        return tell(SHARED, guard, workdir / "stories", sink)
    finally:
        sink.close()


@pytest.mark.parametrize("story", [cls.name for cls in SHARED])
def test_story(told, story):
    error = told[story].error
    assert error is None, error
