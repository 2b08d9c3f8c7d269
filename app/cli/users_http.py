"""`pipeline-guard users list|add|role|disable` over HTTP (``users create`` works on the database)."""

import getpass
from typing import Annotated

import typer

from app.auth.permissions import Role
from app.cli.http_common import Connection, http_command, output

USER_COLUMNS = [
    ("username", ("username",)),
    ("role", ("role",)),
    ("disabled", ("disabled",)),
    ("last login", ("last_login_at",)),
    ("created", ("created_at",)),
]


def register(users: typer.Typer) -> None:
    users.command("list")(list_users)
    users.command("add")(add_user)
    users.command("role")(set_role)
    users.command("disable")(disable_user)


@http_command
def list_users(conn: Connection) -> None:
    """List users (admin)."""
    output(conn, conn.call("list_users"), USER_COLUMNS)


@http_command
def add_user(
    conn: Connection,
    name: str,
    role: Annotated[Role, typer.Option("--role", help="admin, operator, viewer or ingest")] = Role.VIEWER,
    password: Annotated[
        str | None,
        typer.Option("--password", envvar="PIPELINE_NEW_PASSWORD", help="prompted for when omitted"),
    ] = None,
) -> None:
    """Create a user on the guard (admin)."""
    password = password or getpass.getpass(f"password for {name}: ")
    body = conn.call("create_user", name, password, role.value)
    output(conn, body) if conn.json_output else typer.echo(f"created {role.value} {name}")


@http_command
def set_role(conn: Connection, name: str, role: Role) -> None:
    """Change a user's role (takes effect on their next request)."""
    body = conn.call("update_user", name, role=role.value)
    output(conn, body) if conn.json_output else typer.echo(f"{name} is now {role.value}")


@http_command
def disable_user(
    conn: Connection,
    name: str,
    enable: Annotated[bool, typer.Option("--enable", help="re-enable instead")] = False,
) -> None:
    """Disable a user (their tokens stop working at once)."""
    body = conn.call("update_user", name, disabled=not enable)
    output(conn, body) if conn.json_output else typer.echo(f"{'enabled' if enable else 'disabled'} {name}")
