"""examples/pipeline_job.py runs against a real guard, and survives an unreachable one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.ports import free_port

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pipeline_job.py"


def run_example(url: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), "--rows", "300", "--url", url],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def test_example_against_a_running_guard(live):
    result = run_example(live.url, PIPELINE_USERNAME=live.username, PIPELINE_PASSWORD=live.password)
    assert result.returncode == 0, result.stderr
    assert "loaded 300 rows" in result.stderr
    import httpx

    response = httpx.get(
        f"{live.url}/api/v1/components/example-etl",
        headers={"Authorization": f"Bearer {live.token()}"},
        timeout=10,
    )
    assert response.status_code == 200


def test_example_survives_an_unreachable_guard():
    result = run_example(f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 0, result.stderr
    assert "loaded 300 rows" in result.stderr and "Traceback" not in result.stderr
