"""`pipeline-guard config`: validate a file, write a commented sample."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Configuration commands.", no_args_is_help=True)


def sample_text() -> str:
    return files("app").joinpath("config_sample.yaml").read_text(encoding="utf-8")


@app.command("validate")
def validate(file: Path) -> None:
    """Print every problem of FILE with its path; exit 2 when there is any."""
    from app.config.loading import validate_config_file

    problems = validate_config_file(file)
    if problems:
        for line in problems:
            typer.echo(line, err=True)
        typer.echo(f"{file}: {len(problems)} problem(s)", err=True)
        raise typer.Exit(2)
    typer.echo(f"{file}: valid")


@app.command("sample")
def sample(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write here instead of stdout")] = None,
) -> None:
    """Write a commented sample configuration that validates."""
    text = sample_text()
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {out}")


@app.command("audit")
def audit(
    file: Annotated[
        Path | None, typer.Argument(help="config file (else PIPELINE_CONFIG and the environment)")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Report insecure settings with severity and fix.

    Exit code: 0 none or only low, 1 medium, 2 high, 3 critical (the worst finding).
    """
    import json

    from rich.console import Console
    from rich.table import Table

    from app.config.loading import load_settings
    from app.security.audit import audit_settings, exit_code

    findings = audit_settings(load_settings(config_file=file))
    if json_output:
        typer.echo(json.dumps([f.as_dict() for f in findings], indent=2))
    elif not findings:
        typer.echo("no insecure settings found")
    else:
        colours = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan"}
        table = Table(title="config audit")
        for column in ("severity", "path", "problem", "fix"):
            table.add_column(column, overflow="fold")
        for f in findings:
            table.add_row(f"[{colours[f.severity]}]{f.severity}[/]", f.path, f.problem, f.fix)
        Console().print(table)
    raise typer.Exit(exit_code(findings))
