"""`pipeline-guard maintenance list|add|open|close`: recurring maintenance windows and windows a
pipeline opens for its component (over HTTP, to a running guard)."""

from typing import Annotated

import typer

from app.cli.http_common import Connection, http_command, output, parse_labels

app = typer.Typer(
    help="Maintenance windows: checks keep running, notifications and healing wait "
    "(talks to a running guard).",
    no_args_is_help=True,
)

COLUMNS = [
    ("id", ("id",)),
    ("name", ("name",)),
    ("component", ("component",)),
    ("schedule", ("schedule",)),
    ("tz", ("tz",)),
    ("duration s", ("duration_seconds",)),
    ("active", ("active",)),
    ("window ends", ("window_ends_at",)),
    ("next window", ("next_window_at",)),
    ("comment", ("comment",)),
]


@app.command("list")
@http_command
def list_windows(
    conn: Connection, all_: Annotated[bool, typer.Option("--all", help="include ended windows")] = False
) -> None:
    """Windows and silences (open, planned and recurring; ended ones with --all)."""
    params = {"include_expired": "true"} if all_ else None
    output(conn, conn.call("request", "GET", "/api/v1/silences", params=params), COLUMNS)


@app.command("add")
@http_command
def add_window(
    conn: Connection,
    name: Annotated[str, typer.Argument(help="a unique name")],
    schedule: Annotated[str, typer.Option(help="cron expression: a window opens each time it matches")],
    duration: Annotated[str, typer.Option(help="how long each window stays open, e.g. 45m")],
    tz: Annotated[str, typer.Option(help="IANA time zone of the schedule")] = "UTC",
    component: Annotated[
        str | None, typer.Option(help="component name or shell pattern (default: all)")
    ] = None,
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="key=value; repeat")] = None,
    comment: Annotated[str, typer.Option(help="why (shown on the status page)")] = "",
) -> None:
    """Add a recurring maintenance window."""
    body = {
        "name": name,
        "schedule": schedule,
        "tz": tz,
        "duration": duration,
        "component": component,
        "labels": parse_labels(label),
        "comment": comment,
    }
    created = conn.call(
        "request", "POST", "/api/v1/silences", json={k: v for k, v in body.items() if v is not None}
    )
    if conn.json_output:
        output(conn, created)
    else:
        typer.echo(
            f"maintenance window {created.get('id')} ({name}): next opens {created.get('next_window_at')}"
        )


@app.command("open")
@http_command
def open_window(
    conn: Connection,
    component: Annotated[str, typer.Argument(help="the component being worked on")],
    duration: Annotated[str, typer.Option(help="closes by itself after this long, e.g. 30m")] = "30m",
    comment: Annotated[str | None, typer.Option(help="why")] = None,
) -> None:
    """Open a maintenance window for one component now."""
    body = {"duration": duration, **({"comment": comment} if comment else {})}
    opened = conn.call("request", "POST", f"/api/v1/components/{component}/maintenance", json=body)
    if conn.json_output:
        output(conn, opened)
    else:
        typer.echo(
            f"maintenance window {opened.get('id')} for {component} until {opened.get('window_ends_at')}"
        )


@app.command("close")
@http_command
def close_window(
    conn: Connection,
    component: Annotated[str, typer.Argument()],
    window_id: Annotated[int, typer.Argument(metavar="ID")],
) -> None:
    """Close a component's maintenance window now."""
    closed = conn.call("request", "DELETE", f"/api/v1/components/{component}/maintenance/{window_id}")
    output(conn, closed) if conn.json_output else typer.echo(f"closed maintenance window {window_id}")
