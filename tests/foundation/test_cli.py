"""The local CLI commands, run as real processes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app.cli.config_cmd import sample_text


def run(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        check=False,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        cwd=cwd,
    )


def test_config_validate_reports_paths_and_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("pipeline:\n  monitoring:\n    interval: -1\n")
    result = run("config", "validate", str(bad))
    assert result.returncode == 2
    assert "pipeline.monitoring.interval: must be positive, got -1" in result.stderr


def test_config_sample_writes_a_valid_file(tmp_path):
    out = tmp_path / "sample.yaml"
    assert run("config", "sample", "--out", str(out)).returncode == 0
    assert out.read_text() == sample_text()
    result = run("config", "validate", str(out))
    assert result.returncode == 0, result.stderr


def test_db_upgrade_and_users_create(tmp_path):
    env = {
        "PIPELINE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'guard.db'}",
        "PIPELINE_DATA_DIR": str(tmp_path),
    }
    assert run("db", "upgrade", env=env).returncode == 0
    created = run(
        "users", "create", "ops", "--role", "operator", "--password", "a-long-enough-password", env=env
    )
    assert created.returncode == 0, created.stderr
    assert "created operator ops" in created.stdout
    again = run(
        "users", "create", "ops", "--role", "operator", "--password", "a-long-enough-password", env=env
    )
    assert again.returncode == 2
    assert "already exists" in again.stderr and "Traceback" not in again.stderr


def test_invalid_environment_is_one_clear_error(tmp_path):
    result = run("db", "upgrade", env={"PIPELINE_MONITORING_INTERVAL": "-3s"})
    assert result.returncode == 2
    assert "pipeline.monitoring.interval: must be positive, got -3" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("entry", [["pipeline-guard"], [sys.executable, "-m", "app"]])
def test_entry_points_show_help(entry):
    if entry[0] == "pipeline-guard":
        entry = [os.path.join(os.path.dirname(sys.executable), "pipeline-guard")]
    result = subprocess.run([*entry, "--help"], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "serve" in result.stdout and "config" in result.stdout
