"""Helpers shared by the local CLI commands."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from app.config.settings import Settings

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file (else PIPELINE_CONFIG)", exists=False)
]


def settings_from(config: Path | None) -> Settings:
    from app.config.loading import load_settings  # the server's settings: imported only by local commands

    return load_settings(config_file=config)
