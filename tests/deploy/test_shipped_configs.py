"""Every config file the project ships is loaded by the guard itself (`pipeline-guard config validate`),
the way a user or an orchestrator would run it; and a bad declared component stops the guard."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def guard_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, **(env or {})},
        cwd=cwd or ROOT,
        check=False,
    )


def k8s_config(tmp_path: Path) -> Path:
    """The config file the Deployment mounts, cut out of its ConfigMap exactly as Kubernetes would."""
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy/k8s/configmap.yaml").read_text()) if d]
    (config_map,) = [d for d in docs if d["metadata"]["name"] == "pipeline-guard-config"]
    path = tmp_path / "config.yaml"
    path.write_text(config_map["data"]["config.yaml"])
    return path


SHIPPED = {
    "app/config_sample.yaml": lambda tmp: ROOT / "app/config_sample.yaml",
    "examples/demo.yaml": lambda tmp: ROOT / "examples/demo.yaml",
    "deploy/k8s/configmap.yaml": k8s_config,
}
# What the Secret of deploy/k8s/secret.example.yaml provides, with values the guard accepts.
K8S_ENV = {
    "PIPELINE_DATABASE_URL": "postgresql+asyncpg://guard:pw@127.0.0.1:1/guard",
    "PIPELINE_SECRET_KEY": "a-real-looking-secret-key-0123456789abcdef",
    "PIPELINE_ENV": "production",
}
# What examples/demo.py sets before it starts the guard on examples/demo.yaml.
DEMO_ENV = {
    "DEMO_PYTHON": sys.executable,
    "DEMO_EXAMPLES": str(ROOT / "examples"),
    "DEMO_DIR": "/tmp",
    "DEMO_WORKER_PORT": "18080",
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_guard_accepts_every_shipped_config(name, tmp_path):
    path = SHIPPED[name](tmp_path)
    done = guard_cli("config", "validate", str(path), env={**K8S_ENV, **DEMO_ENV})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(": valid")


def test_the_k8s_config_starts_as_far_as_the_database(tmp_path):
    # `serve` with the mounted config and the Secret's variables: settings load, then the (absent)
    # database is reported with exit 1 — not exit 2 for a configuration the guard refuses.
    env = {
        **K8S_ENV,
        "PIPELINE_CONFIG": str(k8s_config(tmp_path)),
        "PIPELINE_DATA_DIR": str(tmp_path / "var"),
    }
    done = guard_cli("serve", "--port", "9", env=env)
    assert done.returncode == 1, done.stderr
    assert "cannot reach the database" in done.stderr


BAD_COMPONENTS = """
components:
  - name: web
    check: {kind: http}
  - name: nightly
    check: {kind: heartbeat, period: 1h}
    recovery: {strategies: [{kind: nope}]}
"""


def test_config_validate_checks_declared_components(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BAD_COMPONENTS)
    done = guard_cli("config", "validate", str(path))
    assert done.returncode == 2
    assert "components[0] (web).check.url: is required" in done.stderr
    assert "components[1] (nightly).recovery.strategies[0].kind: unknown strategy 'nope'" in done.stderr


def test_serve_refuses_a_bad_declared_component(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BAD_COMPONENTS)
    done = guard_cli(
        "serve",
        "--config",
        str(path),
        "--port",
        "9",
        env={
            "PIPELINE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/g.db",
            "PIPELINE_DATA_DIR": str(tmp_path / "var"),
        },
    )
    assert done.returncode == 2, done.stderr
    assert "components[0] (web).check.url: is required" in done.stderr
    assert not (tmp_path / "g.db").exists()  # refused before touching the database
