"""Dependency topologies and escalations told against one real guard per dialect, all at once (one
thread each): a shared upstream with three consumers (one of which has a second, healthy upstream), a
consumer seen failing before its slow-checked upstream, an upstream without a policy that recovers by
itself (topology_stories.py); a restart that does not fix followed by a webhook that does (and one
that does not: human needed), a heartbeat-watched batch job that relapses after a verified heal, a
component disabled while its action is verified (escalation_stories.py)."""

from __future__ import annotations

import pytest

from tests.scenarios.escalation_stories import ESCALATION
from tests.scenarios.harness import GuardProcess, NotificationSink, guard_config
from tests.scenarios.stories import tell
from tests.scenarios.topology_stories import TOPOLOGY

pytestmark = [pytest.mark.scenarios, pytest.mark.timeout(360)]

STORIES = [*TOPOLOGY, *ESCALATION]


@pytest.fixture(scope="module")
def told(scenario_db):
    url, workdir = scenario_db
    guard = GuardProcess(url, workdir / "course-guard", config=guard_config())
    sink = NotificationSink()
    try:
        return tell(STORIES, guard, workdir / "course-stories", sink)
    finally:
        sink.close()


@pytest.mark.parametrize("story", [cls.name for cls in STORIES])
def test_story(told, story):
    error = told[story].error
    assert error is None, error
