"""`config audit`: each insecure setting is found with its severity; the exit code is the worst."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from app.cli import build_app
from app.config.settings import Settings
from app.security.audit import audit_settings, exit_code

STRONG = "k3y-Zq8wX2vN5pL7rT9yB4mC6dF1gH0jS-extra"


def findings_by_path(settings: Settings) -> dict[str, str]:
    return {f.path: f.severity for f in audit_settings(settings)}


def test_a_sound_config_has_no_findings():
    settings = Settings(security={"secret_key": STRONG})
    assert audit_settings(settings) == []
    assert exit_code([]) == 0


def test_each_insecure_setting_is_reported():
    settings = Settings(
        env="production",
        security={
            "secret_key": "changeme",
            "enabled": False,
            "trusted_proxies": ["*"],
            "ssrf_allowlist": ["0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "example.com"],
            "rate_limiting": {"enabled": False},
        },
        pipeline={"monitoring": {"command_checks_enabled": True}},
        healing={"command_actions_enabled": True},
        components=[
            {
                "name": "etl",
                "check": {"kind": "http", "url": "http://etl.internal/health"},
                "recovery": {"strategies": [{"kind": "webhook", "url": "http://hooks.example.com/restart"}]},
            },
            {"name": "local", "check": {"kind": "http", "url": "http://127.0.0.1:9000/health"}},
        ],
    )
    found = findings_by_path(settings)
    assert found["security.secret_key"] == "critical"
    assert found["security.enabled"] == "critical"
    assert found["security.trusted_proxies[0]"] == "high"
    assert found["security.ssrf_allowlist[0]"] == "high"
    assert found["security.ssrf_allowlist[1]"] == "high"
    assert "security.ssrf_allowlist[2]" not in found and "security.ssrf_allowlist[3]" not in found
    assert found["pipeline.monitoring.command_allowlist"] == "high"
    assert found["healing.command_allowlist"] == "high"
    assert found["security.rate_limiting.enabled"] == "medium"
    assert found["components[0].recovery.strategies[0].url"] == "medium"
    assert found["components[0].check.url"] == "low"
    assert not any(p.startswith("components[1]") for p in found)  # loopback over http is fine
    assert found["security.encryption_key"] == "high"
    assert found["security.docs_enabled"] == "low"
    findings = audit_settings(settings)
    assert findings[0].severity == "critical" and all(f.fix for f in findings)
    assert exit_code(findings) == 3


def test_missing_secret_is_medium_in_development_critical_in_production():
    assert findings_by_path(Settings())["security.secret_key"] == "medium"
    assert findings_by_path(Settings(env="production"))["security.secret_key"] == "critical"


def test_config_audit_command(tmp_path, monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("PIPELINE_"):
            monkeypatch.delenv(key)
    runner = CliRunner()
    good = tmp_path / "good.yaml"
    good.write_text(f"security:\n  secret_key: {STRONG}\n")
    result = runner.invoke(build_app(), ["config", "audit", str(good)])
    assert result.exit_code == 0 and "no insecure settings" in result.stdout
    medium = tmp_path / "medium.yaml"
    medium.write_text(f"security:\n  secret_key: {STRONG}\n  rate_limiting:\n    enabled: false\n")
    result = runner.invoke(build_app(), ["config", "audit", str(medium), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)[0]["path"] == "security.rate_limiting.enabled"
    bad = tmp_path / "bad.yaml"
    bad.write_text("security:\n  secret_key: changeme\n  trusted_proxies: ['*']\n")
    result = runner.invoke(build_app(), ["config", "audit", str(bad)])
    assert result.exit_code == 3 and "critical" in result.stdout and "security.trusted_p" in result.stdout
