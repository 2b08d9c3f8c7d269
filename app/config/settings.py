"""Configuration: defaults < YAML file < environment (PIPELINE_*) < explicit arguments.

The YAML file keeps the seed's sections (``pipeline.monitoring``, ``healing``, ``security``, ``caching``,
``compliance``, ``components``, ``maintenance``, ``rules``, ``channels``). Unknown keys are errors so a typo
never passes silently. ``${VAR}`` (or ``${VAR:-default}``) is interpolated from the environment before
validation. Durations accept ``500ms``, ``10s``, ``5m``, ``24h``, ``7d`` or plain seconds; sizes accept
``512KB``, ``100MB``, ``1GiB`` or plain bytes.

Nothing here reads the environment at import time: ``loading.load_settings()`` does, when called; it
also checks what the file declares (components, channels, rules) with each domain's own rules.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

# The sections and value types live in app.config.sections; re-exported here for callers.
from app.config.sections import (  # noqa: F401
    AlertingSection,
    CachingSection,
    ChannelDeclaration,
    ComplianceSection,
    ComponentDeclaration,
    CsvList,
    DatabaseSection,
    Duration,
    HealingSection,
    MaintenanceDeclaration,
    MonitoringSection,
    PipelineSection,
    PositiveInt,
    RateLimitSection,
    ReplicationSection,
    RuleDeclaration,
    SecuritySection,
    Size,
    parse_duration,
    parse_size,
)
from app.core.errors import ConfigurationError
from app.security.safe_yaml import load_yaml

ENV_PREFIX = "PIPELINE_"

# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------

# Flat environment variables (the names operators know) and where they land in the tree.
FLAT_ENV = {
    "TOKEN_EXPIRY": ("security", "token_expiry"),
    "SECURITY_ENABLED": ("security", "enabled"),
    "SECRET_KEY": ("security", "secret_key"),
    "ENCRYPTION_KEY": ("security", "encryption_key"),
    "TRUSTED_PROXIES": ("security", "trusted_proxies"),
    "RATE_LIMIT_STORAGE": ("security", "rate_limiting", "storage"),
    "RATE_LIMIT_ENABLED": ("security", "rate_limiting", "enabled"),
    "ALERTMANAGER_TOKEN": ("security", "alertmanager_token"),
    "SSRF_ALLOWLIST": ("security", "ssrf_allowlist"),
    "DOCS_ENABLED": ("security", "docs_enabled"),
    "MONITORING_INTERVAL": ("pipeline", "monitoring", "interval"),
    "HEALTH_CHECK_TIMEOUT": ("pipeline", "monitoring", "health_check_timeout"),
    "METRICS_RETENTION": ("pipeline", "monitoring", "metrics_retention"),
    "HEALING_ENABLED": ("healing", "enabled"),
    "ALERT_COOLDOWN": ("alerting", "cooldown"),
    "MAX_CONCURRENT_HEALINGS": ("healing", "max_concurrent"),
}
# Top-level fields read straight from PIPELINE_<NAME>.
TOP_LEVEL_ENV = {
    "ENV",
    "DATABASE_URL",
    "MAX_WORKERS",
    "REGION",
    "CONFIG",
    "ADMIN_PASSWORD",
    "DATA_DIR",
    "REPLICA_ID",
    "LOG_LEVEL",
    "LOG_FORMAT",
}


class Settings(BaseSettings):
    """All of the guard's settings. Build with ``loading.load_settings()``; tests pass their own."""

    model_config = SettingsConfigDict(extra="forbid", validate_assignment=True)

    env: Literal["development", "production", "test"] = "development"
    database_url: str = "sqlite+aiosqlite:///./var/guard.db"
    data_dir: Path = Path("./var")
    config: Path | None = None
    admin_password: SecretStr | None = None
    max_workers: PositiveInt = 100
    region: str | None = None
    replica_id: str | None = None
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    pipeline: PipelineSection = Field(default_factory=PipelineSection)
    healing: HealingSection = Field(default_factory=HealingSection)
    security: SecuritySection = Field(default_factory=SecuritySection)
    alerting: AlertingSection = Field(default_factory=AlertingSection)
    caching: CachingSection = Field(default_factory=CachingSection)
    compliance: ComplianceSection = Field(default_factory=ComplianceSection)
    database: DatabaseSection = Field(default_factory=DatabaseSection)
    replication: ReplicationSection = Field(default_factory=ReplicationSection)
    components: list[ComponentDeclaration] = Field(default_factory=list)
    maintenance: list[MaintenanceDeclaration] = Field(default_factory=list)
    rules: list[RuleDeclaration] = Field(default_factory=list)
    channels: list[ChannelDeclaration] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _removed_sections(cls, data: Any) -> Any:
        # The seed's ``scaling:`` section was parsed and never acted on; scaling is bounded per
        # workload by the kubernetes recovery strategy's min_replicas/max_replicas instead.
        if isinstance(data, dict) and "scaling" in data:
            raise ValueError(
                "the scaling: section is no longer supported (it was never acted on); bound "
                "scale_up with min_replicas/max_replicas on a component's kubernetes recovery "
                "strategy and delete the section"
            )
        return data

    @field_validator("maintenance")
    @classmethod
    def _unique_window_names(cls, value: list[MaintenanceDeclaration]) -> list[MaintenanceDeclaration]:
        names = [w.name for w in value]
        if dup := next((n for n in names if names.count(n) > 1), None):
            raise ValueError(f"maintenance window {dup!r} is declared twice")
        return value

    @field_validator("channels")
    @classmethod
    def _channel_names(cls, value: list[ChannelDeclaration]) -> list[ChannelDeclaration]:
        names = [c.name for c in value]
        if dup := next((n for n in names if names.count(n) > 1), None):
            raise ValueError(f"channel {dup!r} is declared twice")
        for c in value:
            if c.escalate_to is not None and c.escalate_to not in names:
                raise ValueError(
                    f"channel {c.name!r} escalates to {c.escalate_to!r}, which is not declared here"
                )
        return value

    @field_validator("rules")
    @classmethod
    def _unique_rule_names(cls, value: list[RuleDeclaration]) -> list[RuleDeclaration]:
        names = [r.name for r in value]
        if dup := next((n for n in names if names.count(n) > 1), None):
            raise ValueError(f"rule {dup!r} is declared twice")
        return value

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "must start with sqlite+aiosqlite:// (embedded) or postgresql+asyncpg:// (production), "
                f"got {value.split('://')[0]}://"
            )
        return value

    @field_validator("components")
    @classmethod
    def _unique_component_names(cls, value: list[ComponentDeclaration]) -> list[ComponentDeclaration]:
        seen: set[str] = set()
        for decl in value:
            if decl.name in seen:
                raise ValueError(f"component {decl.name!r} is declared twice")
            seen.add(decl.name)
        from app.components import graph

        found = graph.problems({decl.name: decl.depends_on for decl in value})
        if found:
            raise ValueError("; ".join(found))
        return value

    # --- convenience views ------------------------------------------------------------------
    @property
    def monitoring(self) -> MonitoringSection:
        return self.pipeline.monitoring

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],  # noqa: ARG003  pydantic-settings hook, passed by keyword
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,  # noqa: ARG003  hook
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003  hook
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003  hook
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only explicit arguments: loading.load_settings() merges file and environment itself so that
        # precedence and error paths stay in one readable place.
        return (init_settings,)


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------

_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(value: Any, environ: dict[str, str], path: str = "") -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of a YAML tree."""
    if isinstance(value, dict):
        return {k: interpolate(v, environ, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, environ, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            raise ConfigurationError(f"{path}: environment variable ${{{name}}} is not set")

        return _VAR_RE.sub(replace, value)
    return value


def read_config_file(path: Path, environ: dict[str, str]) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = load_yaml(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path}: the top level must be a mapping of sections")
    return interpolate(data, environ)


def _set_path(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = tree
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[path[-1]] = value


def env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """Translate PIPELINE_* variables into a settings tree.

    Flat names (``PIPELINE_MONITORING_INTERVAL``) map to their section; any nested value can also
    be set with ``__`` (``PIPELINE_HEALING__MAX_CONCURRENT=5``).
    """
    tree: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :]
        if name in FLAT_ENV:
            _set_path(tree, FLAT_ENV[name], value)
        elif name in TOP_LEVEL_ENV:
            tree[name.lower()] = value
        elif "__" in name:
            _set_path(tree, tuple(part.lower() for part in name.split("__")), value)
    return tree


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def format_validation_error(exc: ValidationError) -> list[str]:
    """``pipeline.monitoring.interval: must be positive, got -1`` — one line per problem."""
    lines = []
    for error in exc.errors():
        path = ".".join(str(part) for part in error["loc"]) or "(root)"
        message = error["msg"]
        for prefix in ("Value error, ", "Assertion failed, "):
            message = message.removeprefix(prefix)
        if error["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see `pipeline-guard config sample`)"
        lines.append(f"{path}: {message}")
    return lines


MIN_SECRET_KEY_LENGTH = 32
WEAK_SECRETS = {"secret", "changeme", "change-me", "password", "dev", "development", "test"}


def secret_key_problem(secret: str | None) -> str | None:
    if not secret:
        return "PIPELINE_SECRET_KEY is not set"
    if len(secret) < MIN_SECRET_KEY_LENGTH:
        return f"PIPELINE_SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} characters"
    if secret.lower() in WEAK_SECRETS or len(set(secret)) < 8:
        return "PIPELINE_SECRET_KEY is a weak or default value"
    return None


def production_problems(settings: Settings) -> list[str]:
    """Why a production start must be refused (empty when it may start)."""
    if settings.env != "production":
        return []
    problems = []
    secret = settings.security.secret_key.get_secret_value() if settings.security.secret_key else None
    if problem := secret_key_problem(secret):
        problems.append(
            f"{problem} (generate one: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
        )
    if not settings.security.encryption_key:
        problems.append(
            "PIPELINE_ENCRYPTION_KEY is required in production (channel secrets are encrypted with it; "
            "generate one: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())')"
        )
    if not settings.security.enabled:
        problems.append(
            "security is disabled (PIPELINE_SECURITY_ENABLED=false) — allowed only outside production"
        )
    return problems
