"""End to end: the real flaky worker, the real guard (`pipeline-guard serve` in a subprocess, SQLite,
real scheduler/alerts/healing loops), a real crash → detection → restart → verified healthy → alert
resolved with the healing attempt as its resolution_action."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _demo():
    spec = importlib.util.spec_from_file_location("pipeline_guard_demo", ROOT / "examples" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("how", ["crash", "hang"])
def test_demo_worker_is_detected_restarted_verified_and_resolved(tmp_path, how):
    lines: list[str] = []
    timeline = _demo().run_demo(tmp_path, how=how, out=lines.append, timeout=60)
    report = "\n".join(lines)
    assert {"detected", "restart", "healthy", "alert_resolved"} <= set(timeline["seen"]), report
    assert timeline["detected"] <= timeline["restart"] <= timeline["healthy"] <= timeline["alert_resolved"], (
        report
    )
    attempt = timeline["attempt"]
    assert attempt["strategy"] == "restart" and attempt["state"] == "succeeded"
    assert timeline["resolution_action"] == f"restarted by healing attempt {attempt['id']}", report
