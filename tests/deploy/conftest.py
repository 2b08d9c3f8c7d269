"""Fixtures for the deploy-file tests: repository paths and the Prometheus command-line tools."""

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"

# Debian names; CI (.ci/run) installs the packages that provide them.
TOOL_PACKAGES = {
    "promtool": "prometheus",
    "amtool": "prometheus-alertmanager",
}


def require_tool(name: str) -> str:
    """Path of a real command-line tool; fail (CI) or skip (opt-in) when it is missing."""
    path = shutil.which(name)
    if path:
        return path
    package = TOOL_PACKAGES.get(name, name)
    message = f"`{name}` not found: install the Debian package `{package}` (apt-get install {package})"
    if os.environ.get("PIPELINE_TEST_ALLOW_MISSING_TOOLS") == "1":
        pytest.skip(message + " — skipped because PIPELINE_TEST_ALLOW_MISSING_TOOLS=1")
    pytest.fail(message + "; set PIPELINE_TEST_ALLOW_MISSING_TOOLS=1 to skip instead", pytrace=False)


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_tool("promtool")


@pytest.fixture(scope="session")
def amtool() -> str:
    return require_tool("amtool")
