"""Secrets of recovery policies beyond webhook headers: a ``restart`` command's ``env`` values, the
credential fields of a webhook ``body`` and the webhook URL's password are write-only for every role
and encrypted at rest, for API and declared components alike. Sending back what was read keeps them
(while the strategy keeps its target); the command still runs with the real values, and its output
(shown to every role) does not show them."""

from __future__ import annotations

import json
import sys

from sqlalchemy import text

from app.healing.strategies.base import ActionContext
from app.monitoring.declarative import sync_declared_components
from app.security.crypto import MASK
from tests.conftest import make_settings, running_guard

ENV_TOKEN = "s3cr3t-ENVTOKEN"
ENV_URL_PASSWORD = "s3cr3t-ENVURLPW"
URL_PASSWORD = "s3cr3t-URLPASS"
BODY_TOKEN = "s3cr3t-BODYTOKEN"
BODY_KEY = "s3cr3t-BODYKEY"
SECRETS = (ENV_TOKEN, ENV_URL_PASSWORD, URL_PASSWORD, BODY_TOKEN, BODY_KEY)

PRINT_ENV = "import os; print(os.environ['DEPLOY_TOKEN'], os.environ['DATABASE_URL'], os.environ['LEVEL'])"


def _recovery() -> dict:
    return {
        "strategies": [
            {
                "kind": "restart",
                "argv": [sys.executable, "-c", PRINT_ENV],
                "env": {
                    "DEPLOY_TOKEN": ENV_TOKEN,
                    "DATABASE_URL": f"postgresql://etl:{ENV_URL_PASSWORD}@db/etl",
                    "LEVEL": "debug",
                },
            },
            {
                "kind": "webhook",
                "url": f"http://ci:{URL_PASSWORD}@127.0.0.1:9/rerun",
                "body": {
                    "ref": "main",
                    "auth": {"token": BODY_TOKEN},
                    "api_key": BODY_KEY,
                    "stage": "{component}",
                },
            },
        ],
        "cooldown": 0,
    }


def _assert_no_secret(text_: str) -> None:
    for secret in SECRETS:
        assert secret not in text_, f"{secret} leaked: {text_[:800]}"


async def _stored(guard, name: str) -> dict:
    async with guard.session() as session:
        row = (
            await session.execute(text("SELECT recovery FROM components WHERE name = :n"), {"n": name})
        ).scalar_one()
    return json.loads(row) if isinstance(row, str) else row


async def test_env_body_and_url_secrets_are_write_only_and_encrypted(db_url, tmp_path):
    settings = make_settings(
        db_url,
        tmp_path,
        security={"ssrf_allowlist": ["127.0.0.1/32"]},
        healing={"command_actions_enabled": True, "command_allowlist": [sys.executable]},
    )
    async with running_guard(settings) as guard:
        admin = await guard.headers("admin")
        created = await guard.client.post(
            "/api/v1/components", headers=admin, json={"name": "etl", "recovery": _recovery()}
        )
        assert created.status_code == 201, created.text
        _assert_no_secret(created.text)
        for role in ("viewer", "operator", "admin"):
            headers = await guard.headers(role)
            one = await guard.client.get("/api/v1/components/etl", headers=headers)
            listed = await guard.client.get("/api/v1/components", headers=headers)
            assert one.status_code == listed.status_code == 200
            _assert_no_secret(one.text)
            _assert_no_secret(listed.text)
            assert '"secrets"' not in one.text
        shown = one.json()["recovery"]
        command, webhook = (s["params"] for s in shown["strategies"])
        assert command["env"] == {"DEPLOY_TOKEN": MASK, "DATABASE_URL": MASK, "LEVEL": MASK}
        assert webhook["url"] == f"http://ci:{MASK}@127.0.0.1:9/rerun"
        assert webhook["body"] == {
            "ref": "main",
            "auth": {"token": MASK},
            "api_key": MASK,
            "stage": "{component}",
        }

        _assert_no_secret(json.dumps(await _stored(guard, "etl")))

        # PATCH back what was read: the stored secrets stay (and stay encrypted).
        patched = await guard.client.patch(
            "/api/v1/components/etl", headers=admin, json={"recovery": {**shown, "max_attempts": 6}}
        )
        assert patched.status_code == 200, patched.text
        _assert_no_secret(patched.text)
        stored = await _stored(guard, "etl")
        _assert_no_secret(json.dumps(stored))
        registry = guard.runtime.healing.registry
        revealed = registry.secrets.revealed(stored["strategies"][1]["params"])
        assert revealed["url"] == f"http://ci:{URL_PASSWORD}@127.0.0.1:9/rerun"
        assert revealed["body"]["auth"]["token"] == BODY_TOKEN and revealed["body"]["api_key"] == BODY_KEY

        # The stored command runs with the real environment; its output does not show it.
        result = await registry.get("restart").execute(
            ActionContext(
                component="etl",
                labels={},
                incident_id="1",
                attempt_id=1,
                attempt_number=1,
                params=stored["strategies"][0]["params"],
                timeout_s=30,
            )
        )
        assert result.success, result
        assert result.output.split() == [MASK, MASK, MASK]  # every env value is a secret

        # A mask never follows a command whose argv changed, nor a webhook sent to another host.
        other_argv = json.loads(json.dumps(shown))
        other_argv["strategies"][0]["params"]["argv"] = [sys.executable, "-c", "print(1)"]
        refused = await guard.client.patch(
            "/api/v1/components/etl", headers=admin, json={"recovery": other_argv}
        )
        assert refused.status_code == 422, refused.text
        assert "recovery.strategies[0].env.DEPLOY_TOKEN" in refused.text
        _assert_no_secret(refused.text)
        other_host = json.loads(json.dumps(shown))
        other_host["strategies"][1]["params"]["url"] = f"http://ci:{MASK}@localhost:9/rerun"
        refused = await guard.client.patch(
            "/api/v1/components/etl", headers=admin, json={"recovery": other_host}
        )
        assert refused.status_code == 422, refused.text
        _assert_no_secret(refused.text)
        assert (await _stored(guard, "etl")) == stored


async def test_declared_policy_secrets_are_encrypted_at_rest(db_url, tmp_path):
    declared = {
        "name": "loader",
        "recovery": {
            "strategies": [
                _recovery()["strategies"][0],
                {
                    "kind": "webhook",
                    "url": f"http://ci:{URL_PASSWORD}@127.0.0.1:9/rerun",
                    # A credential header (always secret); not Authorization: beside the URL's
                    # credentials it could not be sent.
                    "headers": [{"name": "X-Api-Key", "value": BODY_KEY}],
                    "body": {"token": BODY_TOKEN},
                },
            ]
        },
    }
    settings = make_settings(
        db_url, tmp_path, security={"ssrf_allowlist": ["127.0.0.1/32"]}, components=[declared]
    )
    async with running_guard(settings) as guard:
        rt = guard.runtime
        await sync_declared_components(rt.core, rt.secret_box, rt.healing.registry)
        stored = await _stored(guard, "loader")
        _assert_no_secret(json.dumps(stored))
        header = stored["strategies"][1]["params"]["headers"][0]
        assert header["secret"] is True and "value_encrypted" in header
        one = await guard.client.get("/api/v1/components/loader", headers=await guard.headers("viewer"))
        assert one.status_code == 200
        _assert_no_secret(one.text)
        # The same file again: the same policy (fresh ciphertexts do not make it a new version).
        async with guard.session() as session:
            version = (
                await session.execute(text("SELECT version FROM components WHERE name = 'loader'"))
            ).scalar_one()
        report = await sync_declared_components(rt.core, rt.secret_box, rt.healing.registry)
        assert report["updated"] == []
        # A row written before the secrets were sealed (clear values): the next start seals it.
        clear = json.loads(json.dumps(stored))
        command = clear["strategies"][0]["params"]
        command["env"] = rt.healing.registry.secrets.revealed(command)["env"]
        del command["secrets"]
        cast = "CAST(:r AS jsonb)" if db_url.startswith("postgresql") else ":r"
        async with guard.session() as session:
            await session.execute(
                text(f"UPDATE components SET recovery = {cast} WHERE name = 'loader'"),
                {"r": json.dumps(clear)},
            )
        assert ENV_TOKEN in json.dumps(await _stored(guard, "loader"))
        report = await sync_declared_components(rt.core, rt.secret_box, rt.healing.registry)
        assert report["updated"] == ["loader"]
        _assert_no_secret(json.dumps(await _stored(guard, "loader")))
        version += 1
        async with guard.session() as session:
            again = (
                await session.execute(text("SELECT version FROM components WHERE name = 'loader'"))
            ).scalar_one()
        assert again == version
