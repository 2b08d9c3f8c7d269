"""Incident stories told against one real guard per dialect, all at once (one thread each): a dependency
chain (HTTP, and a batch job watched by its heartbeat), two independent faults at the same moment,
a relapse inside and after the stick window, edits over the API while an incident is open.
See stories.py for each story's script and what it asserts. They are told together with the stories
of test_topology_and_escalation_stories.py (the ``told`` fixture, conftest.py): every story has its
own components, so none sees another's alerts or attempts."""

from __future__ import annotations

import pytest

from tests.scenarios.stories import SHARED

pytestmark = [pytest.mark.scenarios, pytest.mark.timeout(360)]


@pytest.mark.parametrize("story", [cls.name for cls in SHARED])
def test_story(told, story):
    error = told[story].error
    assert error is None, error
