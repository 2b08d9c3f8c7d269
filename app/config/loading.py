"""Loading the settings: defaults < YAML file < environment (PIPELINE_*) < explicit arguments, then
what the file declares checked with each domain's own rules (``declared.py``).

``settings.py`` knows the shapes and reads the sources; this module puts them together for the two
callers that start from a file or the environment (``create_app`` without settings, the CLI). Tests
that build their own ``Settings`` skip it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.config.declared import declared_problems
from app.config.settings import (
    Settings,
    deep_merge,
    env_overrides,
    format_validation_error,
    read_config_file,
)
from app.core.errors import ConfigurationError


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
        settings = Settings(**tree)
    except ValidationError as exc:
        problems = format_validation_error(exc)
        raise ConfigurationError("invalid configuration", details={"problems": problems}) from None
    if problems := declared_problems(settings):
        raise ConfigurationError("invalid configuration", details={"problems": problems})
    return settings


def validate_config_file(path: str | Path, environ: dict[str, str] | None = None) -> list[str]:
    """Every problem of a config file as ``path: message`` lines (empty when valid)."""
    environ = dict(os.environ if environ is None else environ)
    try:
        tree = read_config_file(Path(path), environ)
        settings = Settings(**tree)
    except ConfigurationError as exc:
        return list(exc.details.get("problems", [])) or [exc.message]
    except ValidationError as exc:
        return format_validation_error(exc)
    return declared_problems(settings)
