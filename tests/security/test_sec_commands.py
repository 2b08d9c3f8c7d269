"""The command allowlist holds against the known bypasses: loader/interpreter variables (BASH_ENV,
LD_PRELOAD, PATH...) and an executable elsewhere that carries an allowlisted name. Real scripts
leave a marker file when they run, so "refused" means "did not run"."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import update

from app.db.models import Component
from app.healing.strategies.base import ActionContext
from app.healing.strategies.command import CommandStrategy
from tests.monitoring.conftest import mon_settings, monitored


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/bash\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def scripts(tmp_path):
    marker = tmp_path / "marker"
    payload = _script(tmp_path / "payload.sh", f"touch {marker}")
    good = _script(tmp_path / "bin" / "ok.sh", f"echo ok > {tmp_path / 'ran-ok'}; exit 0")
    evil = _script(tmp_path / "evil" / "python3", f"touch {marker}; exit 0")
    return {"marker": marker, "payload": payload, "good": good, "evil": evil, "ran": tmp_path / "ran-ok"}


async def test_command_check_refuses_loader_variables_and_foreign_executables(db_url, tmp_path, scripts):
    settings = mon_settings(
        db_url, tmp_path, monitoring={"command_allowlist": [str(scripts["good"]), "python3"]}
    )
    async with monitored(settings) as (guard, scheduler):
        admin = await guard.headers("admin")
        good = {"kind": "command", "argv": [str(scripts["good"])]}
        r = await guard.client.post("/api/v1/components", headers=admin, json={"name": "good", "check": good})
        assert r.status_code == 201, r.text

        for name, value in (
            ("BASH_ENV", str(scripts["payload"])),
            ("LD_PRELOAD", "/tmp/x.so"),
            ("ENV", "/x"),
            ("PATH", str(scripts["evil"].parent)),
            ("PYTHONSTARTUP", "/x"),
            ("PERL5OPT", "-e1"),
            ("NODE_OPTIONS", "--require /x"),
            ("RUBYOPT", "-r/x"),
            ("BASH_FUNC_ls%%", "() { id; }"),
        ):
            r = await guard.client.post(
                "/api/v1/components",
                headers=admin,
                json={"name": "bad", "check": {**good, "env": {name: value}}},
            )
            assert r.status_code == 422, (name, r.text)
            assert f"check.env.{name}" in r.text, r.text
        r = await guard.client.post(
            "/api/v1/components",
            headers=admin,
            json={"name": "bad", "check": {**good, "env_allow": ["LD_LIBRARY_PATH"]}},
        )
        assert r.status_code == 422 and "check.env_allow" in r.text, r.text

        # A row written before the rule (or by hand) is refused again when it would run.
        r = await guard.client.post(
            "/api/v1/components", headers=admin, json={"name": "legacy", "check": good}
        )
        assert r.status_code == 201
        async with guard.session() as session:
            await session.execute(
                update(Component)
                .where(Component.name == "legacy")
                .values(
                    check={
                        **good,
                        "env": {"BASH_ENV": str(scripts["payload"])},
                        "env_allow": [],
                        "cwd": None,
                        "max_output_kib": 8,
                        "timeout": None,
                    },
                    version=Component.version + 1,
                )
            )
        # An executable elsewhere with an allowlisted basename.
        r = await guard.client.post(
            "/api/v1/components",
            headers=admin,
            json={"name": "foreign", "check": {"kind": "command", "argv": [str(scripts["evil"])]}},
        )
        assert r.status_code == 201, r.text  # the allowlist is the scheduler's: checked when it would run

        await scheduler.run_once()
        states = {
            name: (await guard.client.get(f"/api/v1/components/{name}", headers=admin)).json()["state"]
            for name in ("good", "legacy", "foreign")
        }
        assert states["good"]["last_outcome"] == "up", states
        assert scripts["ran"].exists()
        for name in ("legacy", "foreign"):
            assert states[name]["last_outcome"] == "down", states
            assert "refused" in states[name]["last_detail"] or "invalid" in states[name]["last_detail"], (
                states
            )
        assert not scripts["marker"].exists(), "a refused command ran"


async def test_restart_strategy_refuses_at_save_and_at_run_time(db_url, tmp_path, scripts):
    healing = {"command_actions_enabled": True, "command_allowlist": [str(scripts["good"]), "python3"]}
    settings = mon_settings(db_url, tmp_path, healing=healing)
    async with monitored(settings) as (guard, _scheduler):
        admin = await guard.headers("admin")

        async def save(params):
            return await guard.client.post(
                "/api/v1/components",
                headers=admin,
                json={"name": "svc", "recovery": {"strategies": [{"kind": "restart", "params": params}]}},
            )

        r = await save({"argv": [str(scripts["good"])], "env": {"BASH_ENV": str(scripts["payload"])}})
        assert r.status_code == 422 and "recovery.strategies[0].env.BASH_ENV" in r.text, r.text
        r = await save({"argv": [str(scripts["good"])], "env": {"LD_PRELOAD": "/tmp/evil.so"}})
        assert r.status_code == 422 and "env.LD_PRELOAD" in r.text, r.text
        r = await save({"argv": [str(scripts["evil"])]})
        assert r.status_code == 422 and "recovery.strategies[0].argv" in r.text, r.text
        r = await save({"argv": [str(scripts["good"])], "env": {"STAGE": "etl"}})
        assert r.status_code == 201, r.text

    # Run time: params that got past validation some other way are refused before anything starts.
    strategy = CommandStrategy(settings)
    for params in (
        {"argv": [str(scripts["evil"])], "env": {}, "cwd": None, "timeout": 5.0, "success_exit_codes": [0]},
        {
            "argv": [str(scripts["good"])],
            "env": {"BASH_ENV": str(scripts["payload"])},
            "cwd": None,
            "timeout": 5.0,
            "success_exit_codes": [0],
        },
    ):
        ctx = ActionContext(
            component="svc",
            labels={},
            incident_id="i-1",
            attempt_id=1,
            attempt_number=1,
            params=params,
            timeout_s=5.0,
        )
        result = await strategy.execute(ctx)
        assert not result.success and result.data.get("refused"), result
    assert not scripts["marker"].exists(), "a refused command ran"
    ok = await strategy.execute(
        ActionContext(
            component="svc",
            labels={},
            incident_id="i-1",
            attempt_id=1,
            attempt_number=1,
            timeout_s=5.0,
            params={
                "argv": [str(scripts["good"])],
                "env": {},
                "cwd": None,
                "timeout": 5.0,
                "success_exit_codes": [0],
            },
        )
    )
    assert ok.success, ok
    assert os.path.exists(scripts["ran"])
