"""Configuration: defaults < YAML file < environment (PIPELINE_*) < explicit arguments.

The YAML file keeps the seed's sections (``pipeline.monitoring``, ``healing``, ``security``,
``scaling``, ``caching``, ``compliance``, ``components``). Unknown keys are errors so a typo never
passes silently. ``${VAR}`` (or ``${VAR:-default}``) is interpolated from the environment before
validation. Durations accept ``500ms``, ``10s``, ``5m``, ``24h``, ``7d`` or plain seconds; sizes
accept ``512KB``, ``100MB``, ``1GiB`` or plain bytes.

Nothing here reads the environment at import time: ``load_settings()`` does, when called.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from app.errors import ConfigurationError

ENV_PREFIX = "PIPELINE_"

# ---------------------------------------------------------------------------------------------
# Scalar parsers
# ---------------------------------------------------------------------------------------------

_DURATION_RE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "kib": 1024, "ki": 1024,
    "m": 1000**2, "mb": 1000**2, "mib": 1024**2, "mi": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "gi": 1024**3,
    "t": 1000**4, "tb": 1000**4, "tib": 1024**4, "ti": 1024**4,
}


def parse_duration(value: Any) -> float:
    """Return seconds for ``10s``/``5m``/``24h``/``7d``/``500ms`` or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 10s, 5m, 24h, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match:
            return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    raise ValueError(f"expected a duration like 10s, 5m, 24h, 7d, got {value!r}")


def parse_size(value: Any) -> int:
    """Return bytes for ``100MB``/``64KiB`` or a number of bytes."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like 64KB or 100MB, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match and match.group(2) is not None and match.group(2).lower() in _SIZE_UNITS:
            return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
    raise ValueError(f"expected a size like 64KB or 100MB, got {value!r}")


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError(f"must be positive, got {value:g}")
    return value


def _non_negative(value: float) -> float:
    if value < 0:
        raise ValueError(f"must not be negative, got {value:g}")
    return value


Duration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive)]
OptionalWait = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_non_negative)]
Size = Annotated[int, BeforeValidator(parse_size), AfterValidator(_positive)]
PositiveInt = Annotated[int, AfterValidator(_positive)]


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


CsvList = Annotated[list[str], BeforeValidator(_split_csv)]


class Section(BaseModel):
    """A config section: unknown keys are errors, values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ---------------------------------------------------------------------------------------------
# Sections (the seed's layout)
# ---------------------------------------------------------------------------------------------


class MonitoringSection(Section):
    interval: Duration = 30.0
    health_check_timeout: Duration = 10.0
    jitter: Annotated[float, Field(ge=0, le=1)] = 0.1
    failure_threshold: PositiveInt = 3
    success_threshold: PositiveInt = 1
    flap_window: PositiveInt = 10
    flap_threshold: PositiveInt = 5
    recovery_grace: OptionalWait = 30.0
    metrics_retention: Duration = 24 * 3600.0
    results_retention: Duration = 24 * 3600.0
    rollup_retention: Duration = 30 * 86400.0
    allow_unknown_metric_components: bool = True
    command_checks_enabled: bool = False
    command_allowlist: list[str] = Field(default_factory=list)


class PipelineSection(Section):
    monitoring: MonitoringSection = Field(default_factory=MonitoringSection)


class HealingSection(Section):
    enabled: bool = True
    max_concurrent: PositiveInt = 3
    max_concurrent_per_group: PositiveInt = 2
    group_label: str = "app"
    strategies: list[str] = Field(default_factory=lambda: ["restart", "webhook", "kubernetes", "notify_only"])
    dry_run: bool = False
    require_approval: bool = False
    command_actions_enabled: bool = False
    command_allowlist: list[str] = Field(default_factory=list)
    command_env_allowlist: list[str] = Field(default_factory=list)
    command_cwd_allowlist: list[str] = Field(default_factory=list)
    # Learned ordering of a component's strategies (when its policy sets learned_ordering): thompson | ucb
    learning: Literal["thompson", "ucb"] = "thompson"


class RateLimitSection(Section):
    enabled: bool = True
    default: str = "100/minute"
    metrics: str = "1000/minute"
    health: str = "300/minute"
    storage: str = "memory://"


class SecuritySection(Section):
    enabled: bool = True
    token_expiry: Duration = 3600.0
    secret_key: SecretStr | None = None
    encryption_key: Annotated[list[SecretStr], BeforeValidator(_split_csv)] = Field(default_factory=list)
    trusted_proxies: CsvList = Field(default_factory=list)
    rate_limiting: RateLimitSection = Field(default_factory=RateLimitSection)
    login_max_failures: PositiveInt = 5
    login_lockout: Duration = 300.0
    ssrf_allowlist: CsvList = Field(default_factory=list)
    docs_enabled: bool = True
    status_page_public: bool = True
    alertmanager_token: SecretStr | None = None
    issuer: str = "pipeline-guard"
    audience: str = "pipeline-guard-api"


class AlertingSection(Section):
    """Alert lifecycle and the notification outbox (app/alerts, app/notify)."""

    cooldown: Duration = 300.0  # the seed's alert_cooldown: re-notify a still-firing alert at most this often
    maintenance_interval: Duration = 15.0  # re-open expired acks, apply/lift silences
    escalation_interval: Duration = 30.0
    outbox_interval: Duration = 2.0
    outbox_batch: PositiveInt = 20
    request_timeout: Duration = 10.0
    max_response_bytes: Size = 65536
    retry_base: Duration = 5.0  # first retry after ~this, doubling per attempt, plus up to 20% jitter
    retry_max: Duration = 3600.0
    max_attempts: PositiveInt = 12
    claim_lease: Duration = 60.0  # a claimed notification is retried by anyone after this (crash safety)
    stop_timeout: Duration = 5.0  # how long shutdown waits for in-flight deliveries before cancelling them
    default_language: str = "en"
    alertmanager_component_labels: list[str] = Field(default_factory=lambda: ["component", "job", "instance"])


class ScalingSection(Section):
    min_instances: PositiveInt = 1
    max_instances: PositiveInt = 10
    scale_up_threshold: Annotated[float, Field(ge=0, le=1)] = 0.8
    scale_down_threshold: Annotated[float, Field(ge=0, le=1)] = 0.3


class CachingSection(Section):
    enabled: bool = True
    ttl: Duration = 5.0
    max_entries: PositiveInt = 10_000


class ComplianceSection(Section):
    standards: list[str] = Field(default_factory=list)
    data_retention: Duration = 90 * 86400.0
    audit_logging: bool = True


class DatabaseSection(Section):
    pool_size: PositiveInt = 10
    max_overflow: int = 5
    pool_timeout: Duration = 2.0
    statement_timeout: Duration = 30.0
    echo: bool = False


class ReplicationSection(Section):
    lease_ttl: Duration = 15.0
    renew_interval: Duration = 5.0


class ComponentDeclaration(Section):
    """A component declared in the config file (synced at startup by the monitoring engine)."""

    name: str
    description: str = ""
    endpoint: str | None = None
    critical: bool = False
    labels: dict[str, str] = Field(default_factory=dict)
    check: dict[str, Any] | None = None
    recovery: dict[str, Any] | None = None
    enabled: bool = True


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
    "ENV", "DATABASE_URL", "MAX_WORKERS", "REGION", "CONFIG", "ADMIN_PASSWORD", "DATA_DIR",
    "REPLICA_ID", "LOG_LEVEL", "LOG_FORMAT",
}


class Settings(BaseSettings):
    """All of the guard's settings. Build with ``load_settings()``; tests pass their own."""

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
    scaling: ScalingSection = Field(default_factory=ScalingSection)
    alerting: AlertingSection = Field(default_factory=AlertingSection)
    caching: CachingSection = Field(default_factory=CachingSection)
    compliance: ComplianceSection = Field(default_factory=ComplianceSection)
    database: DatabaseSection = Field(default_factory=DatabaseSection)
    replication: ReplicationSection = Field(default_factory=ReplicationSection)
    components: list[ComponentDeclaration] = Field(default_factory=list)

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if not (value.startswith("sqlite+aiosqlite://") or value.startswith("postgresql+asyncpg://")):
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
        return value

    # --- convenience views ------------------------------------------------------------------
    @property
    def monitoring(self) -> MonitoringSection:
        return self.pipeline.monitoring

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only explicit arguments: load_settings() merges file and environment itself so that
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
        data = yaml.safe_load(text) or {}
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
        name = key[len(ENV_PREFIX):]
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
            if message.startswith(prefix):
                message = message[len(prefix):]
        if error["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see `pipeline-guard config sample`)"
        lines.append(f"{path}: {message}")
    return lines


def load_settings(
    config_file: str | Path | None = None,
    environ: dict[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build Settings from defaults, the YAML file, the environment and explicit overrides."""
    environ = dict(os.environ if environ is None else environ)
    from_env = env_overrides(environ)
    path = config_file or from_env.get("config")
    tree: dict[str, Any] = {}
    if path:
        tree = read_config_file(Path(path), environ)
        tree["config"] = str(path)
    tree = deep_merge(tree, from_env)
    tree = deep_merge(tree, overrides)
    try:
        return Settings(**tree)
    except ValidationError as exc:
        problems = format_validation_error(exc)
        raise ConfigurationError("invalid configuration", details={"problems": problems}) from None


def validate_config_file(path: str | Path, environ: dict[str, str] | None = None) -> list[str]:
    """Every problem of a config file as ``path: message`` lines (empty when valid)."""
    environ = dict(os.environ if environ is None else environ)
    try:
        tree = read_config_file(Path(path), environ)
        Settings(**tree)
    except ConfigurationError as exc:
        return list(exc.details.get("problems", [])) or [exc.message]
    except ValidationError as exc:
        return format_validation_error(exc)
    return []


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
        problems.append(f"{problem} (generate one: python -c 'import secrets; print(secrets.token_urlsafe(48))')")
    if not settings.security.encryption_key:
        problems.append("PIPELINE_ENCRYPTION_KEY is required in production (channel secrets are encrypted with it; "
                        "generate one: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')")
    if not settings.security.enabled:
        problems.append("security is disabled (PIPELINE_SECURITY_ENABLED=false) — allowed only outside production")
    return problems
