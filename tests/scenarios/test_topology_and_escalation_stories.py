"""Dependency topologies and escalations told against one real guard per dialect, all at once (one
thread each): a shared upstream with three consumers (one of which has a second, healthy upstream), a
consumer seen failing before its slow-checked upstream, an upstream without a policy that recovers by
itself (topology_stories.py); a restart that does not fix followed by a webhook that does (and one
that does not: human needed), a heartbeat-watched batch job that relapses after a verified heal, a
component disabled while its action is verified (escalation_stories.py). They are told together with
the stories of test_incident_stories.py (the ``told`` fixture, conftest.py)."""

from __future__ import annotations

import pytest

from tests.scenarios.escalation_stories import ESCALATION
from tests.scenarios.topology_stories import TOPOLOGY

pytestmark = [pytest.mark.scenarios, pytest.mark.timeout(360)]

STORIES = [*TOPOLOGY, *ESCALATION]


@pytest.mark.parametrize("story", [cls.name for cls in STORIES])
def test_story(told, story):
    error = told[story].error
    assert error is None, error
