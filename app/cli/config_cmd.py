"""`pipeline-guard config`: validate a file, write a commented sample."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import typer

from app.config import validate_config_file

app = typer.Typer(help="Configuration commands.", no_args_is_help=True)


def sample_text() -> str:
    return files("app").joinpath("config_sample.yaml").read_text(encoding="utf-8")


@app.command("validate")
def validate(file: Path) -> None:
    """Print every problem of FILE with its path; exit 2 when there is any."""
    problems = validate_config_file(file)
    if problems:
        for line in problems:
            typer.echo(line, err=True)
        typer.echo(f"{file}: {len(problems)} problem(s)", err=True)
        raise typer.Exit(2)
    typer.echo(f"{file}: valid")


@app.command("sample")
def sample(out: Path = typer.Option(None, "--out", "-o", help="write here instead of stdout")) -> None:
    """Write a commented sample configuration that validates."""
    text = sample_text()
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {out}")
