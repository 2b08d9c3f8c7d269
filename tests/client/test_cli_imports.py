"""Client commands must not import the server: `--help` and every HTTP command pay for httpx only."""

from __future__ import annotations

import json
import subprocess
import sys

SERVER_MODULES = (
    "fastapi",
    "starlette",
    "sqlalchemy",
    "alembic",
    "uvicorn",
    "pydantic_settings",
    "app.main",
    "app.platform.lifespan",
    "app.config.settings",
    "app.db",
    "app.core.errors",
)

PROBE = """
import json, sys
from typer.testing import CliRunner
from app.cli import build_app
app = build_app()
runner = CliRunner()
for argv in (["--help"], ["components", "--help"], ["metrics", "summary", "--help"], ["serve", "--help"],
             ["status", "--url", "http://127.0.0.1:9", "--token", "x"]):
    runner.invoke(app, argv)
print(json.dumps(sorted(sys.modules)))
"""


def test_help_and_client_commands_do_not_import_the_server():
    # A fresh interpreter: the test session itself has imported the server long ago.
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    leaked = [m for m in loaded if any(m == s or m.startswith(s + ".") for s in SERVER_MODULES)]
    assert leaked == []
    assert "httpx" in loaded  # the status command really ran its client
