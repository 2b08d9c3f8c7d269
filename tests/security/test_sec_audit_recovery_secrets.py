"""The audit log keeps a summary of each write's request body, and admins read it: the secrets of a
recovery policy (a command's environment under any variable name, credential fields of a webhook
body) must be masked there as they are in GET /components."""

from __future__ import annotations

import sys

SECRETS = ("s3cr3t-DBPASS", "s3cr3t-PASSWD", "s3cr3t-AUTHUSER")


async def test_audit_summaries_mask_recovery_secrets(guard):
    admin = await guard.headers("admin")
    recovery = {
        "strategies": [
            {"kind": "restart", "argv": [sys.executable, "-c", "pass"], "env": {"DB_PASS": SECRETS[0]}},
            {
                "kind": "webhook",
                "url": "https://ci.example.org/rerun",
                "body": {"passwd": SECRETS[1], "auth": {"user": SECRETS[2]}, "ref": "main"},
            },
        ]
    }
    created = await guard.client.post(
        "/api/v1/components", headers=admin, json={"name": "etl", "recovery": recovery}
    )
    assert created.status_code == 201, created.text
    audit = await guard.client.get("/api/v1/audit", headers=admin)
    assert audit.status_code == 200, audit.text
    assert "/api/v1/components" in audit.text and '"main"' in audit.text  # the summary is there
    for secret in SECRETS:
        assert secret not in audit.text, audit.text[:1500]
