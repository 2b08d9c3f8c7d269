"""The configuration's value types and sections (the seed's layout), each strict about unknown keys.

``app.config.settings`` assembles them into ``Settings``; this module only describes shapes and parses
durations (``500ms``, ``10s``, ``5m``, ``24h``, ``7d``) and sizes (``64KB``, ``100MB``). What a
declaration means to its domain (a channel kind's configuration, a rule's parameters, a component's
check) is checked when the settings are loaded (``declared.py``).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from app.core.locales import check_language

# ---------------------------------------------------------------------------------------------
# Scalar parsers
# ---------------------------------------------------------------------------------------------

_DURATION_RE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "ki": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "mi": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "gi": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1024**4,
    "ti": 1024**4,
}


# Ten years: longer than any interval, retention or window the guard knows, and far inside what a
# datetime can be moved by (a "duration" of 1e20 s or Infinity overflows the first ``now + duration``).
MAX_DURATION_S = 10 * 366 * 86400.0


def parse_duration(value: Any) -> float:
    """Return seconds for ``10s``/``5m``/``24h``/``7d``/``500ms`` or a number of seconds; NaN,
    infinities and magnitudes beyond ``MAX_DURATION_S`` are refused (JSON and YAML can spell them)."""
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):  # a bool falls through to the error
        seconds = float(value) if not isinstance(value, int) or abs(value) <= MAX_DURATION_S else math.inf
    elif isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match:
            seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds is None:
        raise ValueError(f"expected a duration like 10s, 5m, 24h, 7d, got {value!r}")
    if not math.isfinite(seconds) or abs(seconds) > MAX_DURATION_S:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:39] + "…"
        raise ValueError(f"must be a finite duration of at most {MAX_DURATION_S / 86400:g} days, got {shown}")
    return seconds


def parse_size(value: Any) -> int:
    """Return bytes for ``100MB``/``64KiB`` or a number of bytes."""
    if isinstance(value, int) and not isinstance(value, bool):  # a bool falls through to the error
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
# A message catalog the guard ships (app/locales); else the error names the ones it does.
Language = Annotated[str, AfterValidator(check_language)]


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
    # A running attempt's owner renews its lease every third of this; an attempt whose lease ran out
    # is settled by the reconciler (retried if its action never started, interrupted otherwise).
    attempt_lease: Duration = Field(default=30.0, ge=1.0)


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
    # Failures from any address before the account itself backs off (the per-address limit is
    # login_max_failures): high, so a guesser elsewhere cannot easily lock the real user out.
    login_global_max_failures: PositiveInt = 50
    ssrf_allowlist: CsvList = Field(default_factory=list)
    docs_enabled: bool = True
    status_page_public: bool = True
    alertmanager_token: SecretStr | None = None
    issuer: str = "pipeline-guard"
    audience: str = "pipeline-guard-api"
    # `serve` only: a request's head must arrive within this of its first byte, its body within
    # request_body_timeout of the head; else 408 and the connection is closed (app/api/http_protocol.py).
    request_header_timeout: Duration = Field(default=10.0, le=3600)
    request_body_timeout: Duration = Field(default=60.0, le=3600)


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
    default_language: Language = "en"  # the catalog of a channel that names none (API, CLI, config file)
    alertmanager_component_labels: list[str] = Field(default_factory=lambda: ["component", "job", "instance"])


class CachingSection(Section):
    """The per-process cache of metric reads (``/api/v1/metrics/latest`` and ``/summary``)."""

    enabled: bool = True
    ttl: Duration = 5.0
    max_entries: PositiveInt = 10_000


class ComplianceSection(Section):
    data_retention: Duration = 90 * 86400.0
    audit_logging: bool = True

    @model_validator(mode="before")
    @classmethod
    def _no_standards(cls, data: Any) -> Any:
        # ``standards`` was read and then ignored; a file that still sets it is told so, by name.
        if isinstance(data, dict) and "standards" in data:
            raise ValueError("'standards' is no longer a setting (it never had an effect): remove it")
        return data


class DatabaseSection(Section):
    pool_size: PositiveInt = 10
    max_overflow: int = 5
    pool_timeout: Duration = 2.0
    statement_timeout: Duration = 30.0
    echo: bool = False


class ReplicationSection(Section):
    lease_ttl: Duration = 15.0
    renew_interval: Duration = 5.0


class MaintenanceDeclaration(Section):
    """A recurring maintenance window declared in the config file (synced at startup by name)."""

    name: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
    component: str | None = Field(
        default=None, max_length=128, description="name or shell pattern; empty = any"
    )
    labels: dict[str, str] = Field(default_factory=dict)
    schedule: str
    tz: str = "UTC"
    duration: Duration
    comment: str = ""

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        from app.core.cron import cron_problem

        if problem := cron_problem(value):
            raise ValueError(problem)
        return value

    @field_validator("tz")
    @classmethod
    def _zone(cls, value: str) -> str:
        from app.core.cron import zone_problem

        if problem := zone_problem(value):
            raise ValueError(problem)
        return value


class ChannelDeclaration(Section):
    """A notification channel declared in the config file (synced at startup by name). Put secrets
    in the environment: ``routing_key: ${PAGERDUTY_KEY}``."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    kind: str
    config: dict[str, Any]
    language: Language | None = None  # None: ``alerting.default_language``
    enabled: bool = True
    severities: list[Literal["info", "warning", "critical"]] = Field(default_factory=list)
    matchers: dict[str, str] = Field(default_factory=dict)
    escalation_only: bool = False
    escalate_to: str | None = Field(default=None, description="the name of a channel declared here")
    escalate_after: Duration | None = None


class RuleDeclaration(Section):
    """A detection rule declared in the config file (synced at startup by name; the API may not edit it)."""

    name: str
    component: str
    metric_name: str
    kind: str
    labels: dict[str, str] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    severity: str = "warning"
    enabled: bool = True


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
    # Names of other components declared in this file (checked for unknown names and cycles).
    depends_on: list[str] = Field(default_factory=list)
