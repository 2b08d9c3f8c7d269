"""Request and response shapes of the components API."""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.security.check_secrets import shown_check
from app.security.recovery_secrets import shown_recovery

if TYPE_CHECKING:
    from app.config.sections import ComponentDeclaration

NAME_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,126}[a-z0-9])?$"
LABEL_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_./-]{0,62}$"
MAX_LABELS = 32


def _check_labels(labels: dict[str, str]) -> dict[str, str]:
    if len(labels) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} labels")
    for key, value in labels.items():
        if not re.fullmatch(LABEL_KEY_PATTERN, key):  # "$" alone lets a trailing newline in
            raise ValueError(f"label key {key!r} must match {LABEL_KEY_PATTERN}")
        if not isinstance(value, str) or len(value) > 256:
            raise ValueError(f"label {key!r}: value must be a string of at most 256 characters")
    return labels


class ComponentBase(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # 0 is not false, "yes" not true

    description: str = Field(default="", max_length=2000)
    endpoint: str | None = Field(default=None, max_length=2048)
    critical: bool = False
    labels: dict[str, str] = Field(default_factory=dict)
    check: dict[str, Any] | None = Field(
        default=None,
        description=(
            "How the component is observed: "
            "{kind: http|tcp|command|heartbeat|<plugin>, interval, timeout, ...}"
        ),
        examples=[{"kind": "http", "url": "http://127.0.0.1:9000/health", "interval": "30s"}],
    )
    recovery: dict[str, Any] | None = Field(
        default=None,
        description=(
            "Ordered recovery strategies and policy (attempts, back-off, cooldown, breaker, dry_run...)"
        ),
    )
    enabled: bool = True
    depends_on: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="Names of the components this one needs; its failures while one of them is unhealthy are "
        "attributed to that root cause (no notification, no healing of its own). No cycles.",
        examples=[["db"]],
    )

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_labels(value)


class ComponentCreate(ComponentBase):
    name: str = Field(pattern=NAME_PATTERN, description="Unique, URL-safe: lowercase letters, digits, . _ -")

    @classmethod
    def declared(cls, decl: ComponentDeclaration) -> ComponentCreate:
        """The API's creation of a component declared in the config file (``components:``)."""
        return cls(
            name=decl.name,
            description=decl.description,
            endpoint=decl.endpoint,
            critical=decl.critical,
            labels=decl.labels,
            check=decl.check,
            recovery=decl.recovery,
            enabled=decl.enabled,
            depends_on=decl.depends_on,
        )


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _omittable(**constraints: Any) -> Any:
    """A field of a partial update that may be left out but never sent as null (the column cannot
    hold it): null is a 422 naming the field, and the schema does not offer it."""
    return Field(default=None, json_schema_extra=_no_default, **constraints)


class ComponentUpdate(BaseModel):
    """Partial update: only the fields sent change. ``null`` removes the check, the recovery policy,
    the endpoint or the dependencies; the other fields cannot be null."""

    model_config = ConfigDict(extra="forbid", strict=True)

    description: str = _omittable(max_length=2000)
    endpoint: str | None = Field(default=None, max_length=2048)
    critical: bool = _omittable()
    labels: dict[str, str] = _omittable()
    check: dict[str, Any] | None = None
    recovery: dict[str, Any] | None = None
    enabled: bool = _omittable()
    depends_on: list[str] | None = Field(default=None, max_length=64)

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_labels(value)


class ComponentStateOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    status: str
    status_since: datetime
    last_check_at: datetime | None = None
    last_outcome: str | None = None
    last_detail: str | None = None
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    last_ping_at: datetime | None = Field(None, description="heartbeat components: the last ping received")


class ComponentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    endpoint: str | None
    critical: bool
    labels: dict[str, str]
    region: str | None
    check: dict[str, Any] | None
    recovery: dict[str, Any] | None
    enabled: bool
    depends_on: list[str] = Field(default_factory=list)
    source: str
    version: int
    created_at: datetime
    updated_at: datetime
    state: ComponentStateOut | None = None

    @model_validator(mode="after")
    def _show_new(self) -> ComponentOut:
        from app.monitoring.presentation import shown_status

        if self.state is not None:
            self.state.status = shown_status(self.state.status, self.check, self.state.last_ping_at)
        return self

    @field_validator("check")
    @classmethod
    def _mask_check(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        # Credentials are write-only for every role: masked here whatever the stored row holds.
        return shown_check(value)

    @field_validator("recovery")
    @classmethod
    def _mask_recovery(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return shown_recovery(value)


class ComponentPage(BaseModel):
    items: list[ComponentOut]
    total: int
    limit: int
    offset: int
