"""`pipeline-guard login|logout|status|heal|audit`: talk to a running guard over HTTP."""

import contextlib
import getpass
from typing import Annotated

import typer

from app.cli.http_common import (
    DEFAULT_URL,
    Connection,
    fail,
    forget_credentials,
    handle_errors,
    http_command,
    items_of,
    load_credentials,
    output,
    pick,
    resolve_connection,
    save_credentials,
    styled,
)


def register(cli: typer.Typer) -> None:
    cli.command("login")(login)
    cli.command("logout")(logout)
    cli.command("status")(status)
    cli.command("heal")(heal)
    cli.command("audit")(audit)


def login(
    username: Annotated[
        str | None,
        typer.Option("--username", "-u", envvar="PIPELINE_USERNAME", help="prompted for when omitted"),
    ] = None,
    password: Annotated[
        str | None,
        typer.Option(
            "--password",
            envvar="PIPELINE_PASSWORD",
            help="prompted for when omitted (env: PIPELINE_PASSWORD)",
        ),
    ] = None,
    url: Annotated[
        str | None, typer.Option("--url", envvar="PIPELINE_URL", help=f"guard URL (default {DEFAULT_URL})")
    ] = None,
) -> None:
    """Log in and keep the token in the user's config dir (0600)."""
    conn = resolve_connection(url, None, False)
    username = username or typer.prompt("username")
    password = password or getpass.getpass(f"password for {username}@{conn.url}: ")
    with handle_errors(conn):
        with conn.client(username=username, password=password) as client:
            me = client.me()
        if not client.token:
            fail(f"{conn.url} accepted the login but issued no token")
        path = save_credentials(conn.url, client.token, username)
    typer.echo(
        f"logged in to {conn.url} as {me.get('username', username)} ({me.get('role', '?')}); "
        f"token kept in {path}"
    )


def logout(url: Annotated[str | None, typer.Option("--url", envvar="PIPELINE_URL")] = None) -> None:
    """Revoke the stored token on the guard (best effort) and forget it."""
    stored = load_credentials()
    if stored.get("token"):
        conn = resolve_connection(url or stored.get("url"), None, False)
        # Best effort: the guard may be gone; forgetting the token is what matters.
        with contextlib.suppress(Exception):
            conn.call("logout")
    typer.echo("logged out" if forget_credentials() else "not logged in")


STATUS_COLUMNS = [
    ("component", ("name", "component")),
    ("status", ("status", "health", "state.status")),
    ("critical", ("critical",)),
    ("last check", ("last_check", "last_check_at", "state.last_check_at")),
    (
        "open incident",
        (
            "incident.id",
            "current_incident.id",
            "open_incident.id",
            "incident_id",
            "current_incident",
            "open_incident",
            "incident",
        ),
    ),
    ("uptime %", ("uptime_percent", "uptime", "uptime_24h")),
]


def _status_rows(body) -> list[dict]:
    components = body.get("components") if isinstance(body, dict) else body
    if isinstance(components, dict):  # {"name": {...}} or {"name": "healthy"}
        return [
            {"name": name, **(value if isinstance(value, dict) else {"status": value})}
            for name, value in components.items()
        ]
    return items_of(components)


@http_command
def status(conn: Connection) -> None:
    """Components, their status, last check and open incident (GET /api/v1/status)."""
    from app.client import GuardAPIError

    with conn.client() as client:
        try:
            body = client.get_system_status()
        except GuardAPIError as exc:
            if exc.status != 404:
                raise
            # An older guard without the status API: the registry carries each component's state.
            page = client.list_components()
            body = {
                "overall_health": None,
                "components": [{**c, "status": pick(c, "state.status") or "unknown"} for c in items_of(page)],
            }
    if conn.json_output:
        output(conn, body)
        return
    overall = pick(body, "overall_health", "status") if isinstance(body, dict) else None
    output(conn, _status_rows(body), STATUS_COLUMNS, title=f"overall: {overall}" if overall else None)
    if overall:
        typer.echo(f"overall health: {overall}")
    total = body.get("total") if isinstance(body, dict) else None
    shown = len(body.get("components") or []) if isinstance(body, dict) else 0
    if isinstance(total, int) and total > shown:
        counts = ", ".join(f"{k} {v}" for k, v in sorted((body.get("counts_by_status") or {}).items()))
        typer.echo(f"showing {shown} of {total} components ({counts})")


@http_command
def heal(
    conn: Connection,
    component: str,
    strategy: Annotated[str | None, typer.Option("--strategy", "-s", help="run only this strategy")] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="recorded in the audit log")] = None,
) -> None:
    """Trigger healing of COMPONENT now."""
    from app.cli.http_common import console

    with console.status(f"healing {component}…", spinner="dots"):
        body = conn.call("heal", component, strategy=strategy, reason=reason)
    if conn.json_output:
        output(conn, body)
        return
    output(conn, body or {"component": component, "requested": True})


AUDIT_COLUMNS = [
    ("time", ("at",)),
    ("actor", ("username",)),
    ("role", ("role",)),
    ("action", ("action",)),
    ("target", ("target",)),
    ("from", ("client",)),
    ("status", ("status_code",)),
    ("detail", ("summary",)),
]


@http_command
def audit(
    conn: Connection,
    actor: Annotated[str | None, typer.Option(help="only this user's actions")] = None,
    action: Annotated[str | None, typer.Option(help="only this action")] = None,
    since: Annotated[str | None, typer.Option(help="ISO time or duration like 24h")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
) -> None:
    """Who did what, when, from where (GET /api/v1/audit)."""
    output(conn, conn.call("list_audit", actor=actor, action=action, since=since, limit=limit), AUDIT_COLUMNS)


__all__ = ["fail", "register", "styled"]
