"""Helpers shared by the local CLI commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.config import Settings, load_settings

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file (else PIPELINE_CONFIG)", exists=False)
]


def settings_from(config: Path | None) -> Settings:
    return load_settings(config_file=config)
