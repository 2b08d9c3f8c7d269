"""`pipeline-guard users`: local user administration (works without a running guard)."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from app.auth.permissions import Role
from app.cli.common import ConfigOption, settings_from

app = typer.Typer(help="User administration.", no_args_is_help=True)


@app.command("create")
def create(
    name: str,
    role: Annotated[Role, typer.Option("--role", help="admin, operator, viewer or ingest")] = Role.VIEWER,
    password: Annotated[
        str | None,
        typer.Option(
            "--password",
            envvar="PIPELINE_NEW_PASSWORD",
            help="prompted for when omitted (env: PIPELINE_NEW_PASSWORD)",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Create a user directly in the database."""
    settings = settings_from(config)
    if not password:
        password = getpass.getpass(f"password for {name}: ")
    if len(password) < 12:
        typer.echo("error: the password must be at least 12 characters", err=True)
        raise typer.Exit(2)
    from app.cli.bootstrap import create_user

    create_user(settings, name, password, role)
    typer.echo(f"created {role.value} {name}")
