"""Incident stories told against one real guard per dialect, all at once (one thread each): a dependency
chain (HTTP, and a batch job watched by its heartbeat), two independent faults at the same moment,
a relapse inside and after the stick window, edits over the API while an incident is open.
See stories.py for each story's script and what it asserts."""

from __future__ import annotations

import threading

import pytest

from tests.scenarios.harness import GuardProcess, NotificationSink, guard_config
from tests.scenarios.stories import SHARED

pytestmark = [pytest.mark.scenarios, pytest.mark.timeout(360)]


@pytest.fixture(scope="module")
def told(scenario_db):
    url, workdir = scenario_db
    guard = GuardProcess(url, workdir / "stories-guard", config=guard_config())
    sink = NotificationSink()
    stories = {cls.name: cls(guard, workdir / "stories", sink) for cls in SHARED}
    try:
        guard.start()
        guard.post(
            "/api/v1/channels",
            {"name": "stories-hook", "kind": "webhook", "config": {"url": sink.url}},
            expect=201,
        )
        for story in stories.values():
            story.components()
        names = [n for s in stories.values() for n in s.workloads]
        stories[SHARED[0].name].wait(
            lambda: stories[SHARED[0].name].healthy(*names), "every component healthy", *names, timeout=90
        )
        ready = threading.Barrier(len(stories))
        threads = [threading.Thread(target=s.run, args=(ready,), name=s.name) for s in stories.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        guard.stop()
        for story in stories.values():
            story.stop()
        sink.close()
    return stories


@pytest.mark.parametrize("story", [cls.name for cls in SHARED])
def test_story(told, story):
    error = told[story].error
    assert error is None, error
