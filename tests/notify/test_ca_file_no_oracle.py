"""An e-mail channel's ``ca_file`` is a path on the guard's machine: whether it is missing, a
directory, unreadable or not a PEM bundle must give one and the same error, on save and on delivery,
so configuring channels is no way to probe the guard's file system."""

from __future__ import annotations

from tests.conftest import running_guard
from tests.pipelines.providers import self_signed

BASE = {
    "host": "127.0.0.1",
    "port": 9,
    "from_address": "guard@example.org",
    "to": ["oncall@example.org"],
}


async def test_ca_file_errors_do_not_tell_what_exists(notify_settings, tmp_path):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    paths = {
        "missing": str(tmp_path / "missing.pem"),
        "missing directory": str(tmp_path / "nowhere" / "ca.pem"),
        "directory": str(tmp_path),
        "not PEM": str(garbage),
        "a system file": "/etc/passwd",
    }
    async with running_guard(notify_settings) as guard:
        admin = await guard.headers("admin")
        answers = {}
        for what, path in paths.items():
            refused = await guard.client.post(
                "/api/v1/channels",
                headers=admin,
                json={"name": "mail", "kind": "email", "config": {**BASE, "ca_file": path}},
            )
            assert refused.status_code == 422, (what, refused.text)
            error = refused.json()["error"]
            text = str(error["details"]).replace(path, "<path>")
            answers[what] = (error["type"], error["message"], text)
            assert "No such file" not in refused.text and "Errno" not in refused.text
        assert len(set(answers.values())) == 1, answers

        # Saved with a good bundle that is gone by the time a message goes out: the same words.
        cert, _ = self_signed(tmp_path)
        created = await guard.client.post(
            "/api/v1/channels",
            headers=admin,
            json={"name": "mail", "kind": "email", "config": {**BASE, "ca_file": str(cert)}},
        )
        assert created.status_code == 201, created.text
        cert.unlink()
        sent = await guard.client.post(f"/api/v1/channels/{created.json()['id']}/test", headers=admin)
        result = sent.json()
        assert result["delivered"] is False
        assert "Errno" not in result["error"] and "No such file" not in result["error"]
        assert "missing, unreadable or not PEM" in result["error"]
