"""Root cause with real processes: three pipeline stages (``db``, ``etl`` that fails when db does,
``report`` that fails when etl does; tests/pipelines/graph_targets.py), each declared in the YAML
file with ``depends_on`` and a ``restart`` policy that relaunches it, real ``pipeline-guard serve``
processes and a webhook channel to a receiver on 127.0.0.1.

Killing db (-9) must give one firing notification (db's, listing etl and report as affected), one
healing attempt (db's restart), none for etl or report, and all three healthy at the end: on one
replica (SQLite) and on three replicas sharing Postgres."""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import TEST_PASSWORD, TEST_SECRET
from tests.faults.conftest import Recorder
from tests.ports import free_port

pytestmark = pytest.mark.faults  # slow: real processes (`make test-faults`)

ROOT = Path(__file__).resolve().parents[2]
TARGETS = Path(__file__).with_name("graph_targets.py")
STAGES = (("db", None), ("etl", "db"), ("report", "etl"))
RESTART_DELAY_S = 3.0  # db takes a while to come back: etl and report surely fail meanwhile


class Stages:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.ports = {name: free_port() for name, _ in STAGES}

    def argv(self, name: str, upstream: str | None, command: str = "start") -> list[str]:
        up = [f"http://127.0.0.1:{self.ports[upstream]}/health"] if upstream else []
        return [
            sys.executable,
            str(TARGETS),
            command,
            name,
            str(self.ports[name]),
            *up,
            "--dir",
            str(self.state),
            "--delay",
            str(RESTART_DELAY_S),
        ]

    def start_all(self) -> None:
        for name, upstream in STAGES:
            subprocess.run(self.argv(name, upstream)[:-2], check=True, timeout=30)
        (self.state / "restarts.log").unlink()  # the first start is not a restart

    def kill(self, name: str) -> None:
        os.kill(int((self.state / f"{name}.pid").read_text()), signal.SIGKILL)

    def restarts(self) -> collections.Counter:
        path = self.state / "restarts.log"
        lines = path.read_text().split() if path.exists() else []
        return collections.Counter(lines[1::2])

    def stop(self) -> None:
        for name, _ in STAGES:
            with contextlib.suppress(OSError, ValueError):
                os.kill(int((self.state / f"{name}.pid").read_text()), signal.SIGKILL)

    def declared(self) -> list[dict]:
        out = []
        for name, upstream in STAGES:
            out.append(
                {
                    "name": name,
                    "depends_on": [upstream] if upstream else [],
                    "check": {
                        "kind": "http",
                        "url": f"http://127.0.0.1:{self.ports[name]}/health",
                        "interval": 1,
                        "timeout": 2,
                        "failure_threshold": 2,
                        "success_threshold": 1,
                    },
                    "recovery": {
                        "strategies": [{"kind": "restart", "argv": self.argv(name, upstream), "timeout": 30}],
                        "max_attempts": 2,
                        "grace_period": 10,
                        "verify_timeout": 60,
                        "cooldown": 1,
                    },
                }
            )
        return out


def write_config(tmp: Path, stages: Stages) -> Path:
    config = {
        "replication": {"lease_ttl": 6.0, "renew_interval": 2.0},
        "security": {"ssrf_allowlist": ["127.0.0.1/32"]},
        "healing": {"command_actions_enabled": True},
        "alerting": {"outbox_interval": 0.2, "retry_base": 0.2, "retry_max": 2, "cooldown": 600},
        "components": stages.declared(),
    }
    path = tmp / "guard.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class Guard:
    def __init__(self, index: int, db_url: str, config: Path, tmp: Path, encryption_key: str, migrate: bool):
        self.port = free_port()
        self.dir = tmp / f"guard{index}"
        self.dir.mkdir()
        self.log = self.dir / "guard.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
        env.update(
            {
                "PIPELINE_ENV": "test",
                "PIPELINE_DATABASE_URL": db_url,
                "PIPELINE_REPLICA_ID": f"guard{index}",
                "PIPELINE_SECRET_KEY": TEST_SECRET,
                "PIPELINE_ENCRYPTION_KEY": encryption_key,
                "PIPELINE_DATA_DIR": str(self.dir / "var"),
                "PIPELINE_CONFIG": str(config),
                "PIPELINE_RATE_LIMIT_ENABLED": "false",
                "PIPELINE_ADMIN_PASSWORD": TEST_PASSWORD,
                "PIPELINE_LOG_LEVEL": "INFO",
            }
        )
        argv = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        if not migrate:
            argv.append("--no-migrate")
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(self.base + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(self.log.read_text()[-3000:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_for(predicate, timeout: float, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def run(guards: list[Guard], stages: Stages, recorder: Recorder) -> dict:
    base = guards[0].base
    r = httpx.post(
        base + "/api/v1/auth/token", data={"username": "admin", "password": TEST_PASSWORD}, timeout=10
    )
    assert r.status_code == 200, r.text
    client = httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {r.json()['access_token']}"}, timeout=30
    )
    r = client.post(
        "/api/v1/channels",
        json={"name": "receiver", "kind": "webhook", "config": {"url": recorder.url("/notify")}},
    )
    assert r.status_code == 201, r.text

    def statuses() -> dict[str, str]:
        return {c["name"]: c["status"] for c in client.get("/api/v1/status").json()["components"]}

    def all_healthy() -> bool:
        s = statuses()
        return len(s) == 3 and set(s.values()) == {"healthy"}

    assert wait_for(all_healthy, 90), statuses()
    t0 = time.monotonic()
    stages.kill("db")
    seen_failing: set[str] = set()
    roots_seen: list = []

    def recovered() -> bool:
        s = statuses()
        seen_failing.update(n for n, v in s.items() if v != "healthy")
        body = client.get("/api/v1/status").json()
        if body["root_causes"]:
            roots_seen.append(body["root_causes"])
        return stages.restarts()["db"] >= 1 and seen_failing >= {"db", "etl", "report"} and all_healthy()

    assert wait_for(recovered, 180), (statuses(), seen_failing, stages.restarts())
    healed_after = time.monotonic() - t0
    time.sleep(4)  # stragglers: a late notification or a second action would show up now

    def firing() -> list[dict]:
        with recorder.lock:
            return [p for p in recorder.processed.values() if p.get("kind") == "firing"]

    assert wait_for(lambda: firing(), 30)
    with recorder.lock:
        delivered = list(recorder.deliveries)
        payloads = list(recorder.processed.values())
    by_kind = collections.Counter((p["alert"]["component"], p["kind"]) for p in payloads)
    attempts = client.get("/api/v1/healing/attempts", params={"limit": 100}).json()["items"]
    alerts = client.get("/api/v1/alerts", params={"limit": 100, "status": "all"}).json()["items"]
    client.close()
    return {
        "by_kind": by_kind,
        "firing": firing(),
        "attempts": attempts,
        "alerts": alerts,
        "restarts": stages.restarts(),
        "healed_after_s": healed_after,
        "roots_seen": roots_seen,
        "first_notification_s": min((t for t, _ in delivered), default=t0) - t0,
        "seen_failing": seen_failing,
    }


def check(result: dict, label: str) -> None:
    firing = result["firing"]
    print(
        f"\n[{label}] kill db -> first notification {result['first_notification_s']:.1f}s, all three healthy "
        f"{result['healed_after_s']:.1f}s; notifications {dict(result['by_kind'])}; restarts "
        f"{dict(result['restarts'])}; attempts "
        f"{collections.Counter(a['component'] for a in result['attempts'])}"
    )
    assert [p["alert"]["component"] for p in firing] == ["db"], result["by_kind"]
    assert firing[0]["alert"]["affected"] == ["etl", "report"]
    assert not any(c in ("etl", "report") for c, _ in result["by_kind"]), result["by_kind"]
    assert result["restarts"] == collections.Counter({"db": 1})
    assert [a["component"] for a in result["attempts"]] == ["db"]
    assert result["attempts"][0]["state"] == "succeeded"
    health = {a["component"]: a for a in result["alerts"] if a["fingerprint"].startswith("health:")}
    assert health["etl"]["caused_by"] == "db" and health["report"]["caused_by"] == "db", health
    assert {a["status"] for a in health.values()} == {"resolved"}
    assert any(
        c["component"] == "db" and c["affected"] == ["etl", "report"]
        for causes in result["roots_seen"]
        for c in causes
    ), result["roots_seen"]


@pytest.fixture
def stages(tmp_path):
    state = tmp_path / "stages"
    state.mkdir()
    s = Stages(state)
    s.start_all()
    yield s
    s.stop()


@pytest.fixture
def receiver():
    r = Recorder()
    yield r
    r.close()


def _encryption_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


@pytest.mark.timeout(400)
def test_killing_db_notifies_and_heals_only_db_on_one_replica(tmp_path, stages, receiver, sqlite_template):
    db = tmp_path / "guard.db"
    db.write_bytes(sqlite_template.read_bytes())
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 0
    config = write_config(tmp_path, stages)
    guard = Guard(0, f"sqlite+aiosqlite:///{db}", config, tmp_path, _encryption_key(), migrate=True)
    try:
        guard.wait_healthy()
        check(run([guard], stages, receiver), "1 replica, SQLite")
    finally:
        guard.stop()


@pytest.mark.timeout(500)
def test_killing_db_notifies_and_heals_only_db_on_three_replicas(
    tmp_path, stages, receiver, postgres_databases
):
    url = postgres_databases.create()
    config = write_config(tmp_path, stages)
    key = _encryption_key()
    guards = [Guard(0, url, config, tmp_path, key, migrate=False)]
    try:
        guards[0].wait_healthy()
        for i in (1, 2):
            guards.append(Guard(i, url, config, tmp_path, key, migrate=False))
        for g in guards:
            g.wait_healthy()
        check(run(guards, stages, receiver), "3 replicas, Postgres")
    finally:
        for g in guards:
            g.stop()
