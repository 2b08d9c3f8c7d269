"""docker-compose.yml and Dockerfile, checked by structure (no Docker engine runs here).

`docker-compose config -q` (Debian package `docker-compose`, needs no engine) also validates the
compose file when it is installed.
"""

import os
import re
import shutil
import subprocess

import pytest
import yaml

from .conftest import DEPLOY, REPO

COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
ENV_EXAMPLE = REPO / ".env.example"

SERVICES = {"postgres", "guard", "guard-2", "prometheus", "alertmanager", "grafana"}
GUARD_ENV = {
    "PIPELINE_ENV",
    "PIPELINE_DATABASE_URL",
    "PIPELINE_SECRET_KEY",
    "PIPELINE_ENCRYPTION_KEY",
    "PIPELINE_ADMIN_PASSWORD",
    "PIPELINE_ALERTMANAGER_TOKEN",
    "PIPELINE_REGION",
}
# Values for the variables the compose file requires (${VAR:?...}), as a user's .env would give them.
REQUIRED_VARS = {
    "PIPELINE_SECRET_KEY": "s" * 48,
    "PIPELINE_ENCRYPTION_KEY": "k" * 44,
    "PIPELINE_ADMIN_PASSWORD": "admin-password",
    "PIPELINE_ALERTMANAGER_TOKEN": "am-token",
    "GRAFANA_ADMIN_PASSWORD": "grafana-password",
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def test_services(compose: dict) -> None:
    assert set(compose["services"]) == SERVICES


def test_guard_replicas_share_one_definition(compose: dict) -> None:
    text = COMPOSE_FILE.read_text()
    assert re.search(r"^x-guard: &guard$", text, re.MULTILINE)
    assert text.count("<<: *guard") == 2
    guard, guard2 = compose["services"]["guard"], compose["services"]["guard-2"]
    # The anchor resolved: both replicas got the same image, build, environment and healthcheck.
    for key in ("image", "build", "environment", "healthcheck", "restart"):
        assert guard[key] == guard2[key], key
    assert guard["build"]["context"] == "."
    assert guard["ports"] == ["8080:8080"]
    assert guard2["ports"] == ["8081:8080"]
    assert guard["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert guard2["depends_on"]["postgres"]["condition"] == "service_healthy"
    # The second replica waits for the first, so the migrations never run twice at once.
    assert guard2["depends_on"]["guard"]["condition"] == "service_healthy"


def test_guard_environment(compose: dict) -> None:
    env = compose["services"]["guard"]["environment"]
    assert set(env) >= GUARD_ENV
    assert env["PIPELINE_ENV"] == "production"
    assert env["PIPELINE_DATABASE_URL"].startswith("postgresql+asyncpg://guard:")
    assert env["PIPELINE_DATABASE_URL"].endswith("@postgres:5432/guard")
    for secret in (
        "PIPELINE_SECRET_KEY",
        "PIPELINE_ENCRYPTION_KEY",
        "PIPELINE_ADMIN_PASSWORD",
        "PIPELINE_ALERTMANAGER_TOKEN",
    ):
        # No secret is baked into the file: compose refuses to start until .env sets it.
        assert re.fullmatch(rf"\$\{{{secret}:\?[^}}]+\}}", env[secret]), env[secret]
    documented = set(re.findall(r"^([A-Z_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    assert set(REQUIRED_VARS) <= documented


def test_healthchecks(compose: dict) -> None:
    services = compose["services"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    for name in ("guard", "guard-2"):
        test = " ".join(services[name]["healthcheck"]["test"])
        assert "urllib.request" in test and "http://127.0.0.1:8080/health" in test
    for name in SERVICES:
        assert "healthcheck" in services[name], name


def test_bind_mounts_exist_in_the_repo(compose: dict) -> None:
    binds = []
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                binds.append(source)
                assert (REPO / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in compose["volumes"], f"{name}: named volume {source} not declared"
    assert "./deploy/prometheus" in binds
    assert "./deploy/alertmanager/alertmanager.yml" in binds
    assert "./deploy/grafana/provisioning" in binds


def test_alertmanager_token_reaches_its_credentials_file(compose: dict) -> None:
    am = compose["services"]["alertmanager"]
    config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    credentials_file = config["receivers"][0]["webhook_configs"][0]["http_config"]["authorization"][
        "credentials_file"
    ]
    script = " ".join(am["command"])
    assert f'"$$PIPELINE_ALERTMANAGER_TOKEN" > {credentials_file}' in script
    assert "exec /bin/alertmanager" in script
    assert (
        compose["services"]["guard"]["environment"]["PIPELINE_ALERTMANAGER_TOKEN"]
        == am["environment"]["PIPELINE_ALERTMANAGER_TOKEN"]
    )


def test_alertmanager_reaches_every_guard_replica(compose: dict) -> None:
    config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    url = config["receivers"][0]["webhook_configs"][0]["url"]
    host = url.split("//", 1)[1].split(":", 1)[0]
    replicas = [name for name in compose["services"] if name.startswith("guard")]
    assert len(replicas) >= 2
    for name in replicas:
        assert host in compose["services"][name]["networks"]["default"]["aliases"], name


def test_prometheus_scrapes_the_compose_services(compose: dict) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {
        t.split(":")[0]
        for job in config["scrape_configs"]
        for s in job["static_configs"]
        for t in s["targets"]
    }
    assert {"guard", "guard-2", "alertmanager"} <= targets
    assert {"guard", "guard-2", "alertmanager"} <= set(compose["services"])


@pytest.mark.realclients
def test_docker_compose_config_accepts_the_file() -> None:
    tool = shutil.which("docker-compose")
    if not tool:
        pytest.skip("docker-compose not installed (Debian package `docker-compose`; needs no engine)")
    env = {**os.environ, **REQUIRED_VARS}
    for key in list(env):
        if key.startswith("COMPOSE_"):
            env.pop(key)
    proc = subprocess.run(
        [tool, "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=REPO,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # And it refuses to run without the secrets.
    env.pop("PIPELINE_SECRET_KEY")
    proc = subprocess.run(
        [tool, "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=REPO,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "PIPELINE_SECRET_KEY" in proc.stdout + proc.stderr


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_dockerfile() -> None:
    instructions = dockerfile_instructions()
    stages = [arg for op, arg in instructions if op == "FROM"]
    assert len(stages) >= 2, "multi-stage build"
    assert any(op == "ARG" and "python:3.11-slim" in arg for op, arg in instructions)
    assert all(stage.startswith("${PYTHON_IMAGE}") for stage in stages)
    final = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM") :]
    runs = " ".join(arg for op, arg in instructions if op == "RUN")
    assert "pip install -c constraints.txt ." in runs
    assert ("WORKDIR", "/app") in final
    users = [arg for op, arg in final if op == "USER"]
    assert users and not users[-1].startswith(("root", "0")), "final stage must run as non-root"
    (healthcheck,) = [arg for op, arg in final if op == "HEALTHCHECK"]
    assert "urllib.request" in healthcheck and "/health" in healthcheck and "curl" not in healthcheck
    assert ("EXPOSE", "8080") in final
    (cmd,) = [arg for op, arg in final if op == "CMD"]
    assert cmd == '["pipeline-guard", "serve", "--host", "0.0.0.0", "--port", "8080"]'
    assert not any(op == "COPY" and "--from" not in arg for op, arg in final), (
        "final stage copies only from builder"
    )


def test_dockerignore_lets_in_what_the_build_copies() -> None:
    rules = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*", "allow-list"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert {"app", "pyproject.toml", "constraints.txt", "README.md", "migrations"} <= allowed
    for op, arg in dockerfile_instructions():
        if op == "COPY" and "--from" not in arg:
            sources = arg.split()[:-1]
            assert all(src in allowed or src == "." for src in sources), arg
