"""Configuration: parsing, precedence, interpolation, and messages that name the path."""

from __future__ import annotations

import pytest

from app.cli.config_cmd import sample_text
from app.config.loading import load_settings, validate_config_file
from app.config.settings import parse_duration, parse_size, production_problems
from app.core.errors import ConfigurationError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("5m", 300), ("24h", 86400), ("7d", 604800), ("500ms", 0.5), (30, 30), ("1.5h", 5400)],
)
def test_durations_parse(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["ten seconds", "5x", "", True, None])
def test_bad_durations_are_refused(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "size"), [("100MB", 100_000_000), ("64KiB", 65536), ("1GiB", 1 << 30), (512, 512), ("10b", 10)]
)
def test_sizes_parse(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["lots", "10XB", True, 1.5, None])
def test_bad_sizes_are_refused(bad):
    with pytest.raises(ValueError):
        parse_size(bad)


def test_defaults_without_file_or_environment():
    settings = load_settings(environ={})
    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    assert settings.monitoring.interval == 30
    assert settings.healing.max_concurrent == 3
    assert settings.security.rate_limiting.default == "100/minute"


def test_file_then_environment_precedence(tmp_path):
    path = tmp_path / "guard.yaml"
    path.write_text(
        "pipeline:\n  monitoring:\n    interval: 15s\n    health_check_timeout: 3s\n"
        "healing:\n  enabled: true\n"
    )
    settings = load_settings(
        path, environ={"PIPELINE_MONITORING_INTERVAL": "45s", "PIPELINE_HEALING_ENABLED": "false"}
    )
    assert settings.monitoring.interval == 45  # env beats file
    assert settings.monitoring.health_check_timeout == 3  # file beats default
    assert settings.healing.enabled is False


def test_config_path_from_environment(tmp_path):
    path = tmp_path / "guard.yaml"
    path.write_text("max_workers: 7\n")
    assert load_settings(environ={"PIPELINE_CONFIG": str(path)}).max_workers == 7


def test_nested_environment_override():
    settings = load_settings(
        environ={
            "PIPELINE_HEALING__MAX_CONCURRENT_PER_GROUP": "4",
            "PIPELINE_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1",
        }
    )
    assert settings.healing.max_concurrent_per_group == 4
    assert settings.security.trusted_proxies == ["10.0.0.0/8", "127.0.0.1"]


def test_interpolation(tmp_path):
    path = tmp_path / "guard.yaml"
    path.write_text("database_url: ${DB_URL}\nregion: ${REGION:-eu-west-1}\n")
    settings = load_settings(path, environ={"DB_URL": "postgresql+asyncpg://u@db/guard"})
    assert settings.database_url == "postgresql+asyncpg://u@db/guard"
    assert settings.region == "eu-west-1"


def test_missing_interpolation_variable_names_the_path(tmp_path):
    path = tmp_path / "guard.yaml"
    path.write_text("security:\n  secret_key: ${NOT_SET_ANYWHERE}\n")
    with pytest.raises(
        ConfigurationError,
        match=r"security.secret_key: environment variable \$\{NOT_SET_ANYWHERE\} is not set",
    ):
        load_settings(path, environ={})


def test_validation_messages_name_every_problem_with_its_path(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "pipeline:\n  monitoring:\n    interval: -1\n    health_check_timeout: soon\n    intervall: 5s\n"
        "healing:\n  max_concurrent: 0\nsecurity:\n  rate_limiting:\n    enabled: maybe\n"
    )
    problems = validate_config_file(path, environ={})
    assert "pipeline.monitoring.interval: must be positive, got -1" in problems
    assert any(
        p.startswith("pipeline.monitoring.health_check_timeout: expected a duration") for p in problems
    )
    assert any(p.startswith("pipeline.monitoring.intervall: unknown key") for p in problems)
    assert "healing.max_concurrent: must be positive, got 0" in problems
    assert any(p.startswith("security.rate_limiting.enabled:") for p in problems)
    assert len(problems) == 5


def test_unknown_top_level_section_is_an_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("healling:\n  enabled: true\n")
    assert validate_config_file(path, environ={}) == [
        "healling: unknown key (check the spelling; see `pipeline-guard config sample`)"
    ]


def test_yaml_syntax_error_is_reported(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("pipeline: [unclosed\n")
    [problem] = validate_config_file(path, environ={})
    assert "not valid YAML" in problem


def test_sample_validates(tmp_path):
    path = tmp_path / "sample.yaml"
    path.write_text(sample_text())
    assert validate_config_file(path, environ={}) == []


def test_duplicate_component_names_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("components:\n  - name: a\n  - name: a\n")
    assert validate_config_file(path, environ={}) == ["components: component 'a' is declared twice"]


def test_production_refuses_weak_secret_and_disabled_security():
    weak = load_settings(environ={"PIPELINE_ENV": "production", "PIPELINE_SECRET_KEY": "changeme"})
    assert any("PIPELINE_SECRET_KEY" in p for p in production_problems(weak))
    missing = load_settings(environ={"PIPELINE_ENV": "production"})
    assert any("not set" in p for p in production_problems(missing))
    insecure = load_settings(
        environ={
            "PIPELINE_ENV": "production",
            "PIPELINE_SECRET_KEY": "k3y-" + "abcdefghijklmnopqrstuvwxyz0123456789",
            "PIPELINE_SECURITY_ENABLED": "false",
        }
    )
    assert any("security is disabled" in p for p in production_problems(insecure))
    from cryptography.fernet import Fernet

    strong = load_settings(
        environ={
            "PIPELINE_ENV": "production",
            "PIPELINE_SECRET_KEY": "k3y-" + "abcdefghijklmnopqrstuvwxyz0123456789",
            "PIPELINE_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        }
    )
    assert production_problems(strong) == []
    no_key = load_settings(
        environ={
            "PIPELINE_ENV": "production",
            "PIPELINE_SECRET_KEY": "k3y-" + "abcdefghijklmnopqrstuvwxyz0123456789",
        }
    )
    assert any("ENCRYPTION_KEY" in p for p in production_problems(no_key))


def test_database_url_driver_is_checked():
    with pytest.raises(ConfigurationError) as info:
        load_settings(environ={"PIPELINE_DATABASE_URL": "mysql://x"})
    assert info.value.details["problems"][0].startswith("database_url: must start with sqlite+aiosqlite://")
